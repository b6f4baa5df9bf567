"""The seed's hello world: a task with no parameters, and one that depends on it."""

import time

import luigi

from nectar import NectarTask


class TestS3Task(NectarTask):
    """Write a greeting. Its store follows ENV: local_targets/ when ENV=local, S3 otherwise."""

    def run(self):
        print("hello from TestS3Task")
        time.sleep(1)  # long enough to be seen RUNNING
        with self.output().open("w") as out:
            out.write("hello luigi world\n")


class WithDependencyTask(NectarTask):
    """Read TestS3Task's greeting and add a parameter to it."""

    aparam = luigi.Parameter(description="Any text; it is appended to the greeting.")

    def requires(self):
        return TestS3Task()

    def run(self):
        with self.input().open() as upstream:
            greeting = upstream.read().strip()
        print(f"extending {greeting!r} with {self.aparam!r}")
        with self.output().open("w") as out:
            out.write(f"{greeting}, {self.aparam}\n")
