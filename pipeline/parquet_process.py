"""Parquet files built and compressed in a helper process, off the actor's interpreter.

    writer = ParquetProcess()
    writer.write(path, table, metadata, output_cfg, sync)   # as writer._write_parquet, in the child
    writer.close()

Dictionary encoding, levels and zstd of the codes take a good share of the actor's CPU per hour of
audio; in a process of their own they run beside the actor's threads instead of holding its
interpreter lock. The child is `python -m pipeline.parquet_process <fd>`, a fresh interpreter (no
fork of the threaded actor), talking over a socketpair with length-prefixed messages only: a JSON
header, then the table as an Arrow IPC stream (nothing is pickled). It writes the file at `path` (a
temp file of `writer.commit_shard`, which still does every rename, the manifest record and the
fault stages in the actor) and answers {"ok": true} or {"error": traceback}. A child that dies is
an OSError for that write (the commit fails and removes its parts, so the shard is redone) and is
started again for the next one. One write at a time (commits are one at a time already).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

import pyarrow as pa

from .config import OutputConfig
from .decode_child import watch_parent
from .decode_pool import child_env

START_TIMEOUT_S = 120.0


class ParquetProcess:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.parquet_process", str(child.fileno())],
                                         pass_fds=[child.fileno()], env=child_env(), stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        if not self.conn.poll(START_TIMEOUT_S) or json.loads(self.conn.recv_bytes()) != {"ready": True}:
            self._stop()
            raise OSError(f"the Parquet writer process did not start within {START_TIMEOUT_S} s")

    def write(self, path: str, table: pa.Table, metadata: dict, cfg: OutputConfig, sync: bool) -> None:
        """`writer._write_parquet(path, table, metadata, cfg, sync)`, run in the helper process."""
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
        head = json.dumps({"path": path, "output": dataclasses.asdict(cfg), "sync": sync}).encode()
        with self.lock:
            try:
                if self.proc is None:
                    self._start()
                self.conn.send_bytes(head)
                self.conn.send_bytes(sink.getvalue())
                reply = json.loads(self.conn.recv_bytes())
            except (EOFError, OSError) as exc:
                code = self._stop()
                self.restarts += 1
                raise OSError(f"the Parquet writer process died writing {path} (exit code {code})") from exc
        if "error" in reply:
            raise RuntimeError(f"writing {path} failed in the Parquet writer process:\n{reply['error']}")

    def _stop(self) -> int | None:
        if self.proc is None:
            return None
        try:
            self.proc.kill()
        except OSError:
            pass
        if self.conn is not None:
            self.conn.close()
        code = self.proc.wait()
        self.proc, self.conn = None, None
        return code

    def close(self) -> None:
        with self.lock:
            self._stop()


# ----- the child process ------------------------------------------------------------------------
def _child(fd: int) -> None:
    from . import writer

    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    conn = Connection(fd)
    conn.send_bytes(b'{"ready": true}')
    while True:
        try:
            head = json.loads(conn.recv_bytes())
            blob = conn.recv_bytes()
        except EOFError:
            return
        try:
            table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
            del blob
            writer.write_parquet_file(head["path"], table, OutputConfig(**head["output"]), head["sync"])
            reply = {"ok": True}
        except Exception:  # noqa: BLE001 - reported; the parent raises it
            import traceback

            reply = {"error": traceback.format_exc()[-4000:]}
        conn.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    _child(int(sys.argv[1]))
