"""pipeline.errors: the hierarchy the entry points rely on, and one-line messages from remote tracebacks."""

from pipeline.errors import AudiotokError, ConfigError, InputError, JobFailed, one_line


def test_exit_statuses_and_bases():
    assert (ConfigError.exit_status, InputError.exit_status, JobFailed.exit_status) == (2, 2, 1)
    assert issubclass(ConfigError, ValueError) and issubclass(InputError, ValueError)
    assert all(issubclass(c, AudiotokError) for c in (ConfigError, InputError, JobFailed))


def test_one_line_keeps_the_exception_message_of_a_traceback():
    remote = ("The actor died because of an error raised in its creation task, \x1b[36mray::A.__init__()\x1b[39m\n"
              "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise ValueError(msg)\n"
              "ValueError: bandwidth 1.5 kbps is not supported\n  by this model\n")
    assert one_line(remote) == "ValueError: bandwidth 1.5 kbps is not supported by this model"
    assert one_line(JobFailed("shard a.tar failed 3 times")) == "shard a.tar failed 3 times"
    assert len(one_line("x" * 5000)) == 600
