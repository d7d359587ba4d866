package logstream.example;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * {@code count-by-url}: reads a topic from its beginning to the end offsets seen at start and
 * prints {@code {url: count}} as JSON, what the {@code likes-by-url} view holds as totals.
 *
 * <p>It counts as every logstream view does (README "Counted once, even when clients
 * retry"): a like whose event_id already sits within the previous {@code --dedupe-horizon}
 * offsets of the same partition is a client's retry and is not counted again; a message that
 * does not decode (it would be a dead letter) is not counted and is reported on stderr.
 * Partitions are assigned, not subscribed: no consumer group, nothing committed.
 */
final class UrlCounter {
  private UrlCounter() {}

  static int run(Args args, PrintStream out) throws Exception {
    Contract contract = Contract.load(Path.of(args.required("schemas")), "like");
    String topic = args.get("topic", contract.topic());
    long horizon = args.getLong("dedupe-horizon", 100_000);
    Duration timeout = Duration.ofSeconds(args.getLong("timeout-s", 120));
    BinaryMessageDecoder<GenericRecord> decoder = contract.decoder();

    Map<String, Long> counts = new TreeMap<>();
    Map<Integer, RecentIds> recent = new HashMap<>();
    long undecodable = 0;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config(args))) {
      List<TopicPartition> partitions = new ArrayList<>();
      for (PartitionInfo info : consumer.partitionsFor(topic, timeout)) {
        partitions.add(new TopicPartition(topic, info.partition()));
      }
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, timeout);
      long deadline = System.nanoTime() + timeout.toNanos();
      while (!reached(consumer, ends)) {
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException("the end offsets " + ends + " were not reached");
        }
        for (ConsumerRecord<byte[], byte[]> message : consumer.poll(Duration.ofMillis(500))) {
          if (message.offset() >= ends.get(new TopicPartition(topic, message.partition()))) {
            continue; // written after we started: not ours to count
          }
          GenericRecord like;
          try {
            like = decoder.decode(message.value());
          } catch (Exception e) {
            undecodable++;
            System.err.printf(
                "skipped %s-%d@%d: %s%n", topic, message.partition(), message.offset(), e);
            continue;
          }
          RecentIds ids = recent.computeIfAbsent(message.partition(), p -> new RecentIds(horizon));
          if (ids.seenBefore(like.get("event_id").toString(), message.offset())) {
            continue;
          }
          counts.merge(like.get("url").toString(), 1L, Long::sum);
        }
      }
    }
    if (undecodable > 0) {
      System.err.println(undecodable + " undecodable message(s) not counted");
    }
    out.println(toJson(counts));
    out.flush();
    return 0;
  }

  private static boolean reached(KafkaConsumer<?, ?> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (consumer.position(end.getKey()) < end.getValue()) {
        return false;
      }
    }
    return true;
  }

  static Properties config(Args args) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.required("bootstrap"));
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(
        ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    return props;
  }

  static String toJson(Map<String, Long> counts) {
    StringBuilder json = new StringBuilder("{");
    for (Map.Entry<String, Long> entry : counts.entrySet()) {
      if (json.length() > 1) {
        json.append(',');
      }
      json.append(Json.string(entry.getKey())).append(':').append(entry.getValue());
    }
    return json.append('}').toString();
  }

  /**
   * The event ids of the last {@code horizon} offsets of one partition, oldest first, so the
   * ones that fall out of the window leave from the head: memory stays bounded by the window.
   */
  static final class RecentIds {
    private final long horizon;
    private final LinkedHashMap<String, Long> lastOffset = new LinkedHashMap<>();

    RecentIds(long horizon) {
      this.horizon = horizon;
    }

    /** True when {@code eventId} sits at an offset in [offset - horizon, offset). */
    boolean seenBefore(String eventId, long offset) {
      if (horizon <= 0) {
        return false;
      }
      Iterator<Map.Entry<String, Long>> oldest = lastOffset.entrySet().iterator();
      while (oldest.hasNext() && oldest.next().getValue() < offset - horizon) {
        oldest.remove();
      }
      Long previous = lastOffset.remove(eventId); // re-inserted below: moves to the tail
      lastOffset.put(eventId, offset);
      return previous != null;
    }
  }
}
