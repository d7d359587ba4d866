package logstream.example;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * {@code produce}: writes generated likes straight to Kafka, as ingest would.
 *
 * <p>Key = url (UTF-8), so Kafka's default partitioner (murmur2, the same hash librdkafka's
 * {@code murmur2_random} uses) puts every like of one URL in the partition ingest uses;
 * record timestamp = occurred_at (event time); value = single-object encoding with the
 * latest {@code .avsc}. acks=all and idempotence: an acknowledged like is in every in-sync
 * replica, and the producer's own retries never write it twice.
 *
 * <p>Events are a function of {@code --seed}, so a test can tell exactly what was written;
 * each acknowledged one is printed as a JSON line with its partition and offset.
 */
final class LikeProducer {
  static final long BASE_MS = 1_767_225_600_000L; // 2026-01-01T00:00:00Z

  private LikeProducer() {}

  static int run(Args args, PrintStream out) throws IOException, InterruptedException {
    Contract contract = Contract.load(java.nio.file.Path.of(args.required("schemas")), "like");
    String topic = args.get("topic", contract.topic());
    long count = args.getLong("count", 100);
    Random random = new Random(args.getLong("seed", 1));
    int urls = (int) args.getLong("urls", 10);
    String urlPrefix = args.get("url-prefix", "https://example.com/");
    long baseMs = args.getLong("base-ms", BASE_MS);
    long spanMs = args.getLong("span-ms", 2 * 86_400_000L);
    BinaryMessageEncoder<GenericRecord> encoder = contract.encoder();

    List<GenericRecord> likes = new ArrayList<>();
    List<Future<RecordMetadata>> acks = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config(args))) {
      for (long i = 0; i < count; i++) {
        GenericRecord like =
            new GenericRecordBuilder(contract.latest())
                .set("event_id", uuid4(random).toString())
                .set("url", urlPrefix + random.nextInt(urls))
                .set("user_id", "java-user-" + random.nextInt(1000))
                .set("occurred_at", baseMs + (long) (random.nextDouble() * spanMs))
                .build(); // fields added later (referrer) take their defaults
        likes.add(like);
        acks.add(
            producer.send(
                new ProducerRecord<>(
                    topic,
                    null, // partition: chosen by the default partitioner from the key
                    (Long) like.get("occurred_at"),
                    like.get("url").toString().getBytes(StandardCharsets.UTF_8),
                    encode(encoder, like))));
      }
      producer.flush();
      for (int i = 0; i < likes.size(); i++) {
        RecordMetadata written = get(acks.get(i));
        GenericRecord like = likes.get(i);
        out.println(
            "{\"event_id\":" + Json.string(like.get("event_id").toString())
                + ",\"url\":" + Json.string(like.get("url").toString())
                + ",\"occurred_at\":" + like.get("occurred_at")
                + ",\"topic\":" + Json.string(written.topic())
                + ",\"partition\":" + written.partition()
                + ",\"offset\":" + written.offset() + "}");
      }
    }
    out.flush();
    return 0;
  }

  static Properties config(Args args) {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args.required("bootstrap"));
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    return props;
  }

  static byte[] encode(BinaryMessageEncoder<GenericRecord> encoder, GenericRecord like)
      throws IOException {
    ByteArrayOutputStream value = new ByteArrayOutputStream(128);
    encoder.encode(like, value);
    return value.toByteArray();
  }

  /** A version-4 UUID from the seeded generator (reproducible, unlike UUID.randomUUID). */
  static UUID uuid4(Random random) {
    long msb = (random.nextLong() & ~0xF000L) | 0x4000L;
    long lsb = (random.nextLong() & ~(0xC000L << 48)) | (0x8000L << 48);
    return new UUID(msb, lsb);
  }

  private static RecordMetadata get(Future<RecordMetadata> ack) throws InterruptedException {
    try {
      return ack.get();
    } catch (ExecutionException e) {
      throw new IllegalStateException("a like was not acknowledged: " + e.getCause(), e);
    }
  }
}
