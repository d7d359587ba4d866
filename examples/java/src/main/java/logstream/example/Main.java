package logstream.example;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * A logstream worker in another language: {@code produce} writes likes straight to Kafka and
 * {@code count-by-url} counts them per URL, both from the {@code .avsc} files alone.
 *
 * <pre>
 * java -jar target/logstream-java-worker.jar produce --bootstrap H:P --topic T --schemas DIR
 *     --count N --seed S [--urls 10] [--url-prefix https://example.com/] [--out FILE]
 * java -jar target/logstream-java-worker.jar count-by-url --bootstrap H:P --topic T --schemas DIR
 * </pre>
 *
 * Exit status: 0 done, 1 error (one {@code error:} line on stderr), 2 usage.
 */
public final class Main {
  private Main() {}

  public static void main(String[] argv) {
    // Kafka's client logs every configuration at INFO: keep stderr for what matters.
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    System.exit(run(argv));
  }

  static int run(String[] argv) {
    try {
      if (argv.length == 0) {
        throw new Args.UsageException("expected a command: produce | count-by-url");
      }
      Args args = new Args(argv, 1);
      try (PrintStream out = output(args)) {
        return switch (argv[0]) {
          case "produce" -> LikeProducer.run(args, out);
          case "count-by-url" -> UrlCounter.run(args, out);
          default -> throw new Args.UsageException("unknown command " + argv[0]);
        };
      }
    } catch (Args.UsageException e) {
      System.err.println("usage: " + e.getMessage());
      return 2;
    } catch (Exception e) {
      System.err.println("error: " + e);
      return 1;
    }
  }

  /** {@code --out FILE}, else stdout (left open: closing System.out would end its use). */
  private static PrintStream output(Args args) throws java.io.IOException {
    String path = args.get("out", null);
    if (path == null) {
      return new PrintStream(System.out, false, StandardCharsets.UTF_8) {
        @Override
        public void close() {
          flush();
        }
      };
    }
    return new PrintStream(path, StandardCharsets.UTF_8);
  }
}
