"""Assemble a pinned Apache Kafka runtime from Maven Central with `mvn`, once per version.

Why Maven: machines without Docker or web access still reach Maven Central, and the jars
there are the same ones the official distribution ships. The result is a cache directory
(`<cache>/<version>/libs/*.jar`) shared by every project on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from logstream.errors import BrokerError

__all__ = ["KafkaRuntime", "ensure_kafka_runtime", "require_tool"]

# log4j is not pulled in by kafka_2.13's POM; Kafka 4.0-4.2 log through SLF4J 1.x.
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"  # pinned: an unpinned one resolves an ancient 2.x

_POM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.logstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""

_LOG4J2_PROPERTIES = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
# "Fencing broker N ... session has timed out": when a node lost its leaderships, and proof
# that a live node never did (the fault suite counts these lines).
logger.fencing.name = org.apache.kafka.controller.ReplicationControlManager
logger.fencing.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaRuntime:
    """An assembled Kafka: a classpath and a logging configuration."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.libs = home / "libs"
        self.log4j_config = home / "log4j2.properties"

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")

    def java_command(
        self, main_class: str, *args: str, heap: str = "256m", argfile: Path | None = None
    ) -> list[str]:
        """A `java` command line that runs one of Kafka's main classes. With `argfile`, the
        class and its arguments go to that file (mode 0600) and the command line carries
        only `@argfile`: arguments holding passwords are not shown to other users by `ps`.
        The caller deletes the file once the command has run."""
        if argfile is not None:
            write_private(argfile, "".join(_argfile_line(a) for a in (main_class, *args)))
            main_class, args = f"@{argfile}", ()
        return [
            require_tool(
                "java",
                "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
            ),
            f"-Xmx{heap}",
            f"-Xms{min_heap(heap)}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            self.classpath,
            main_class,
            *args,
        ]


def _argfile_line(arg: str) -> str:
    """One argument of a java @argfile: quoted, with backslashes and quotes escaped."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"\n'


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (mode 0600 from the
    first byte: the temporary file is created so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def min_heap(heap: str) -> str:
    """Start the heap small: two cores and a laptop's memory are the common case."""
    return "128m" if heap.endswith(("m", "g")) else heap


def require_tool(name: str, how_to_install: str) -> str:
    """The full path of a command, or a one-line error that says how to get it."""
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` not found on PATH: {how_to_install}")
    return path


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise assembly across processes (parallel test runs share the cache)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_runtime(version: str, cache_dir: Path, *, quiet: bool = True) -> KafkaRuntime:
    """Return the cached runtime for `version`, fetching it with `mvn` on first use."""
    home = cache_dir.expanduser().resolve() / version
    runtime = KafkaRuntime(home)
    marker = home / ".complete"
    if not marker.exists():
        with _exclusive(cache_dir.expanduser() / f".{version}.lock"):
            if not marker.exists():
                _fetch(version, home, quiet=quiet)
                marker.write_text(version + "\n")
    _write_logging_config(runtime.log4j_config)
    return runtime


def _write_logging_config(path: Path) -> None:
    """The logging configuration of this release, also over a runtime cached by an older one
    (atomically: brokers of the same cache may be starting beside us)."""
    if path.exists() and path.read_text() == _LOG4J2_PROPERTIES:
        return
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fresh.write_text(_LOG4J2_PROPERTIES)
        fresh.replace(path)
    except OSError:  # a cache we may not write (another user's, read-only): keep its config
        with contextlib.suppress(OSError):
            fresh.unlink()


def _fetch(version: str, home: Path, *, quiet: bool) -> None:
    require_tool(
        "java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
    )
    mvn = require_tool("mvn", "install Apache Maven (Debian: apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    libs = home / "libs"
    if libs.exists():
        shutil.rmtree(libs)
    pom = home / "pom.xml"
    pom.write_text(
        _POM_TEMPLATE.format(kafka=version, log4j=LOG4J_VERSION, plugin=DEPENDENCY_PLUGIN_VERSION)
    )
    log_path = home / "mvn.log"
    command = [
        mvn,
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        command.insert(2, "-q")
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = _last_error_line(log_path)
        raise BrokerError(
            f"could not fetch Apache Kafka {version} with mvn ({tail}); "
            f"check network access to Maven Central, full log: {log_path}"
        )


def _last_error_line(log_path: Path) -> str:
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors[0] if errors else (lines[-1] if lines else "no output"))[:300]
