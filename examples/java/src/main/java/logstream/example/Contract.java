package logstream.example;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * The topic contract, read from the repository's {@code .avsc} files alone: no schema registry
 * and no generated classes, so a new schema version needs no rebuild of this worker.
 *
 * <p>Producers write with the latest version (the highest {@code "logstream.version"});
 * readers accept every version ever written, resolving each into the latest, exactly as
 * README "Message format" asks of any consumer.
 */
final class Contract {
  private final List<Schema> versions; // oldest first
  private final String topic;

  private Contract(List<Schema> versions) {
    this.versions = versions;
    Object declared = latest().getObjectProp("logstream.topic");
    this.topic = declared == null ? null : declared.toString();
  }

  /** Every {@code <eventType>.v<N>.avsc} in {@code dir}. */
  static Contract load(Path dir, String eventType) throws IOException {
    List<Schema> found = new ArrayList<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, eventType + ".v*.avsc")) {
      for (Path file : files) {
        // One parser per file: every version declares the same record name.
        found.add(new Schema.Parser().parse(file.toFile()));
      }
    }
    if (found.isEmpty()) {
      throw new IOException("no " + eventType + ".v*.avsc in " + dir);
    }
    found.sort(Comparator.comparingInt(Contract::version));
    return new Contract(found);
  }

  static int version(Schema schema) {
    Object value = schema.getObjectProp("logstream.version");
    if (!(value instanceof Number)) {
      throw new IllegalArgumentException(schema.getFullName() + " has no logstream.version");
    }
    return ((Number) value).intValue();
  }

  Schema latest() {
    return versions.get(versions.size() - 1);
  }

  /** The topic the {@code .avsc} names (without any deployment prefix). */
  String topic() {
    return topic;
  }

  /** Writes C3 01 + CRC-64-AVRO fingerprint of the latest version + Avro body. */
  BinaryMessageEncoder<GenericRecord> encoder() {
    return new BinaryMessageEncoder<>(GenericData.get(), latest());
  }

  /** Reads any version ever written (looked up by fingerprint) into the latest one. */
  BinaryMessageDecoder<GenericRecord> decoder() {
    BinaryMessageDecoder<GenericRecord> decoder =
        new BinaryMessageDecoder<>(GenericData.get(), latest());
    for (Schema older : versions.subList(0, versions.size() - 1)) {
      decoder.addSchema(older);
    }
    return decoder;
  }
}
