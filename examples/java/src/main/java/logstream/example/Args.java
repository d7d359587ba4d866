package logstream.example;

import java.util.HashMap;
import java.util.Map;

/** {@code --name value} options; small enough that the example needs no CLI library. */
final class Args {
  private final Map<String, String> values = new HashMap<>();

  Args(String[] argv, int from) {
    for (int i = from; i < argv.length; i++) {
      String name = argv[i];
      if (!name.startsWith("--") || i + 1 >= argv.length) {
        throw new UsageException("expected --option value, got " + name);
      }
      values.put(name.substring(2), argv[++i]);
    }
  }

  String required(String name) {
    String value = values.get(name);
    if (value == null) {
      throw new UsageException("--" + name + " is required");
    }
    return value;
  }

  String get(String name, String fallback) {
    return values.getOrDefault(name, fallback);
  }

  long getLong(String name, long fallback) {
    String value = values.get(name);
    try {
      return value == null ? fallback : Long.parseLong(value);
    } catch (NumberFormatException e) {
      throw new UsageException("--" + name + " must be a whole number, got " + value);
    }
  }

  /** A mistake on the command line: exit status 2, as every logstream command. */
  static final class UsageException extends RuntimeException {
    UsageException(String message) {
      super(message);
    }
  }
}
