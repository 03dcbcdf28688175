"""Tokenize one shard end to end, without Ray: read -> prepare -> bucket -> encode -> commit.

`ShardTokenizer` holds one model. Decoding and resampling run in `decode_threads` crash-isolated
worker processes (`decode_pool.DecodePool`; 0: the actor's share of the node's cores), split into
1 + `prefetch_shards` pools with a reader thread each, so the next shards are read and decoded
while the current one is encoded (a shard of 8 files cannot keep 15 processes busy alone). The
decoded audio held for shards ahead is bounded by `prefetch_bytes` (`decoded_budget`): a shard
ahead waits for room file by file, the shard being encoded never waits.

`run` may be called from two threads at once (the actor runs with `shards_in_flight_per_actor`
calls in flight), so that the Parquet build, compression and commit of one shard overlap the
encode of the next: one thread at a time holds the *encode lock* while it waits for its shard's
decode and encodes it, in the order the calls were handed out (a call names the shards in flight
before it, `after`, and takes the lock only once they have); before it lets the lock go it takes
the one *commit slot*, so at most one commit is in flight and commits keep the order of the encodes.
`run` returns only once its shard is committed: a process that dies before that loses the call,
and the driver runs the shard again.
The commit's Parquet files are built and compressed in a helper process (`parquet_process`); its
renames and manifest record stay here. A commit that fails removes the shard's part files it
already moved into place, so readers never see a shard without its manifest record. A CUDA
out-of-memory error on a batch halves its forward passes (the codec's `max_batch`) and encodes
the batch again, down to one item (chunk) per pass; the smaller passes then hold for the rest of
the shard. Codes do not depend on the pass size.
Named fault stages (`pipeline.fault_injection`): after_decode, during_encode, encode_oom, before_commit.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Queue

import numpy as np
import torch

from codec import Codec

from . import buckets, fault_injection, host_memory, schema, sources, writer
from . import streams as other_streams
from .config import JobConfig
from .cuda_errors import is_out_of_memory
from .decode_pool import DecodePool, default_processes
from .decoded_budget import DecodedBudget, Dropped, Ticket
from .device_resample import encoder_batch, model_length
from .errors import BadInputError
from .parquet_process import ParquetProcess
from .provenance import Provenance
from .records import EncodeBatch, Rejection, Segment, Shard, ShardRecord
from .sources import ShardReadError

log = logging.getLogger(__name__)

@dataclass
class Prepared:
    """A shard's decoded segments and rejections (and whether reading it failed for good)."""

    segments: list[Segment] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    input_keys: int = 0
    read_seconds: float = 0.0
    decoder_restarts: int = 0
    decoder_peak_rss_mb: float = 0.0


@dataclass(frozen=True)
class EncodeStats:
    padded_samples: int = 0  # samples in the padded batches (per channel)
    true_samples: int = 0
    batches: int = 0
    plan: list[EncodeBatch] = field(default_factory=list)


@dataclass
class _Decode:
    """A shard being (or done) decoded: its future and its ticket in the byte budget."""

    future: Future
    ticket: Ticket


class ShardTokenizer:
    def __init__(self, model: Codec, cfg: JobConfig, out_dir: str, provenance: Provenance,
                 decoders: int | None = None, streams: list[other_streams.TokenStream] = ()):
        host_memory.keep_freed_heap()  # the encode's host tensors: no page faults once warm
        self.model = model
        self.streams = list(streams)  # token streams beside `codes` (pipeline/streams.py)
        self.cfg = cfg
        self.out_dir = out_dir
        self.provenance = provenance
        self._metadata: tuple[Provenance, dict[bytes, bytes]] | None = None
        self.n_q = model.num_quantizers_for(max(cfg.bandwidths))
        # one decoder pool per shard decoding at once (the shard in hand plus prefetch_shards ahead),
        # the decoder processes split between them, so several small shards keep every process busy
        total = decoders or cfg.decode_threads or default_processes()
        lanes = max(1, min(1 + cfg.prefetch_shards, total))
        self.all_pools = [
            DecodePool(cfg.audio, model.sample_rate, model.channels,
                       total // lanes + (1 if i < total % lanes else 0), other_streams.targets(self.streams))
            for i in range(lanes)
        ]
        self.pools: Queue[DecodePool] = Queue()  # the free ones
        for pool in self.all_pools:
            self.pools.put(pool)
        self.decoder_processes = total
        self.reader = ThreadPoolExecutor(lanes)
        self.budget = DecodedBudget(cfg.prefetch_bytes)
        self.decodes: dict[str, _Decode] = {}  # shards decoding or decoded, not yet taken by `run`
        self.taken: set[str] = set()  # shards whose `run` has started and not ended: never forgotten
        self.state = threading.Lock()  # guards decodes and taken (`run` may be called from two threads)
        self.encode_lock = threading.Lock()  # one shard waits for its decode and encodes at a time
        self.turns = threading.Condition()  # guards turned
        self.turned: set[str] = set()  # shards whose `run` has taken the encode lock (or ended)
        self.commit_slot = threading.Semaphore(1)  # at most one commit in flight
        self.parquet = ParquetProcess()  # builds the commits' Parquet files off this interpreter
        self.node_id: str | None = None  # recorded in every manifest record (the Ray node)
        # most items (chunks) per forward pass at the start of each shard; None: the codec's
        # default (CPU: 1; CUDA: an element budget, or for chunked models the batch budget)
        self.pass_limit: int | None = None

    @property
    def pending(self) -> dict[str, Future]:
        """{shard_id: decode future} of the shards decoded ahead and not yet taken by `run`."""
        with self.state:
            return {k: d.future for k, d in self.decodes.items()}

    def keep_only(self, shards: Iterable[Shard]) -> None:
        """Forget shards decoded ahead that are not in `shards` (the driver gave them to another actor);
        shards a `run` has taken are kept."""
        with self.state:
            self._keep_only({s.shard_id for s in shards})

    def _keep_only(self, wanted: set[str]) -> None:
        for shard_id in [k for k in self.decodes if k not in wanted and k not in self.taken]:
            decode = self.decodes.pop(shard_id)
            decode.future.cancel()  # a running decode stops at its next file, or finishes and is dropped
            self.budget.drop(decode.ticket)
            decode.future.add_done_callback(lambda _, ticket=decode.ticket: self.budget.forget(ticket))

    def prefetch(self, shard: Shard) -> None:
        with self.state:
            self._prefetch(shard)

    def _prefetch(self, shard: Shard) -> None:
        if shard.shard_id not in self.decodes and shard.shard_id not in self.taken:
            ticket = Ticket(shard.shard_id)
            self.decodes[shard.shard_id] = _Decode(self.reader.submit(self._prepare, shard, ticket), ticket)

    def run(self, shard: Shard, attempt: int = 1, ahead: list[Shard] | None = None,
            after: list[Shard] = ()) -> ShardRecord:
        """Tokenize and commit `shard`; returns its committed manifest record.

        ahead: the shards the caller will run next, to decode meanwhile; shards decoded ahead and
        not among them, `after` or `shard` are forgotten (None: leave them as they are).
        after: shards whose `run` was called before this one and has not ended: encoded first."""
        try:
            with self.state:
                if ahead is not None:
                    self._keep_only({s.shard_id for s in [shard, *after, *ahead]})
                for upcoming in [shard, *(ahead or [])]:  # the shard to run first, if it is not decoding yet
                    self._prefetch(upcoming)
                self.taken.add(shard.shard_id)
            with self.turns:
                self.turns.wait_for(lambda: all(s.shard_id in self.turned for s in after))
            with self.encode_lock:
                with self.turns:
                    self.turned.add(shard.shard_id)
                    self.turns.notify_all()
                with self.state:
                    decode = self.decodes.pop(shard.shard_id)
                record, tokens, rejections = self._decode_and_encode(shard, attempt, decode)
                del decode  # its future holds the decoded audio: freed before the commit
                self.commit_slot.acquire()  # before the next shard may encode: commits stay in order
            try:
                fault_injection.maybe_fault("before_commit", shard.shard_id)
                return writer.commit_shard(
                    self.out_dir, shard.shard_id,
                    schema.tokens_table(tokens, list(self.cfg.source.metadata_columns),
                                        [s.column for s in self.streams]),
                    schema.rejects_table(rejections),
                    record, self._file_metadata(), self.cfg.output,
                    write_parquet=self.parquet.write,
                )
            finally:
                self.commit_slot.release()
        finally:
            with self.state:
                self.taken.discard(shard.shard_id)
            with self.turns:  # a call that ended early gives its turn up too
                self.turned.add(shard.shard_id)
                self.turns.notify_all()

    def _file_metadata(self) -> dict[bytes, bytes]:
        """`schema.file_metadata` of the provenance (frozen): built once, not once per shard."""
        if self._metadata is None or self._metadata[0] is not self.provenance:
            self._metadata = (self.provenance, schema.file_metadata(self.provenance.to_json()))
        return self._metadata[1]

    def wait_for_commit(self, timeout_s: float) -> bool:
        """Wait until no commit is in flight (up to `timeout_s`); False if one still is."""
        if not self.commit_slot.acquire(timeout=timeout_s):
            return False
        self.commit_slot.release()
        return True

    # ----- stages -------------------------------------------------------------------------------
    def _decode_and_encode(self, shard: Shard, attempt: int, decode: _Decode
                           ) -> tuple[ShardRecord, list[schema.TokenRow], list[Rejection]]:
        """With the encode lock held: the shard's rows and its record (its audio freed again)."""
        started = time.time()
        self.budget.take_in_hand(decode.ticket)
        try:
            prepared = decode.future.result()
            if self.streams:  # a segment another stream cannot encode is rejected as a whole
                prepared.segments, too_short = other_streams.admit(self.streams, prepared.segments)
                prepared.rejections.extend(too_short)
            if self.cfg.strict and prepared.rejections:
                first = prepared.rejections[0]
                raise BadInputError(f"strict: {first.key} in {shard.url}: {first.reason} ({first.detail})")
            fault_injection.maybe_fault("after_decode", shard.shard_id)
            encode_started = time.time()
            rows, stats = self._encode(prepared.segments, shard.shard_id)
            encode_seconds = time.time() - encode_started
        finally:
            self.budget.release(decode.ticket)
        by_reason: dict[str, int] = {}
        for r in prepared.rejections:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        record = ShardRecord(
            shard_id=shard.shard_id, url=shard.url, rows=len(rows), rejects=len(prepared.rejections),
            rejects_by_reason=by_reason, input_keys=prepared.input_keys,
            audio_seconds=sum(s.duration_s for s in prepared.segments), attempt=attempt, node_id=self.node_id,
            worker_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            decoder_peak_rss_mb=prepared.decoder_peak_rss_mb, decoder_restarts=prepared.decoder_restarts,
            read_seconds=prepared.read_seconds, encode_seconds=encode_seconds, wall_seconds=time.time() - started,
            padded_samples=stats.padded_samples, true_samples=stats.true_samples, batches=stats.batches,
            batch_plan=self.model.plan, encode_batches=stats.plan,
        )
        return record, rows, prepared.rejections

    def _prepare(self, shard: Shard, ticket: Ticket) -> Prepared:
        started = time.time()
        cfg = self.cfg
        samples = _read_with_retries(shard, cfg)
        if isinstance(samples, Rejection):
            return Prepared(rejections=[samples], input_keys=0, read_seconds=time.time() - started)
        pool = self.pools.get()  # a free one: there are as many as reader threads
        try:
            results, stats = pool.prepare_all(samples, admit=lambda nbytes: self.budget.admit(ticket, nbytes))
        except Dropped:  # given to another actor while waiting for room: nobody reads this result
            return Prepared()
        finally:
            self.pools.put(pool)
        prepared = Prepared(input_keys=len(samples), decoder_restarts=stats["decoder_restarts"],
                            decoder_peak_rss_mb=stats["decoder_peak_rss_mb"])
        for segments, rejections in results:
            prepared.segments.extend(segments)
            prepared.rejections.extend(rejections)
        prepared.read_seconds = time.time() - started
        return prepared

    def _encode(self, segments: list[Segment], shard_id: str = "") -> tuple[list[schema.TokenRow], EncodeStats]:
        if not segments:
            return [], EncodeStats()
        cfg = self.cfg.buckets
        model = self.model
        rate, hop, chunk = model.sample_rate, model.hop_length, model.chunk_length
        lengths = [model_length(s, rate) for s in segments]
        boundaries = cfg.boundaries_s and [int(b * rate) for b in cfg.boundaries_s]
        if boundaries is None:
            boundaries = buckets.estimate_boundaries(lengths, cfg.num_buckets)
        # chunked models batch chunks, not items: budget by chunk so long items are not split badly
        budget = cfg.batch_budget_samples if chunk is None else max(cfg.batch_budget_samples, max(lengths))
        # chunked models on the CUDA plan: each forward pass takes at most this many chunks, whatever the items
        max_chunks = None
        if chunk is not None and model.plan == "cuda":
            max_chunks = max(1, min(cfg.max_batch_items, cfg.batch_budget_samples // chunk))
        batches = buckets.plan_batches(lengths, boundaries, budget, cfg.max_batch_items, multiple=hop)
        padded, true = buckets.padding_waste(lengths, batches, multiple=hop,
                                             padded_length=model.padded_length if chunk is None else None)
        rows: list[schema.TokenRow | None] = [None] * len(segments)
        limit = self.pass_limit if self.pass_limit is not None else max_chunks
        plan: list[EncodeBatch] = []
        for number, batch in enumerate(batches):
            if number == 1:
                fault_injection.maybe_fault("during_encode", shard_id)
            x, batch_lengths = encoder_batch([segments[i] for i in batch], model)
            items, limit = self._encode_batch(x, batch_lengths, limit, shard_id)
            plan.append(EncodeBatch([segments[i].key for i in batch], limit))
            for i, item in zip(batch, items):
                seg = segments[i]
                rows[i] = schema.TokenRow(
                    key=seg.key, source=seg.source, codes=item.codes.numpy().astype(np.int16),
                    num_samples=item.num_samples, pad_samples=model.pad_samples_for(item.num_samples),
                    scales=item.scales, start_s=seg.start_s, duration_s=seg.duration_s, meta=seg.meta,
                    item_path=seg.path or None,
                )
        other_streams.encode_all(self.streams, segments, rows)
        return rows, EncodeStats(int(padded), int(true), len(batches), plan)

    def _encode_batch(self, x, lengths: list[int], limit: int | None, shard_id: str):
        """`model.encode` of one batch [B, C, T] with at most `limit` items (chunks) per forward pass;
        on CUDA out of memory the passes are halved and the batch encoded again, until one item
        (chunk) per pass fails too. Returns (EncodedItems, the limit that worked)."""
        while True:
            largest = self.model.largest_forward_pass(lengths, x.shape[-1], limit)
            try:
                fault_injection.maybe_fault("encode_oom", shard_id, items=largest)
                items = self.model.encode(x, lengths, bandwidth=max(self.cfg.bandwidths), max_batch=limit)
                return items, limit
            except Exception as exc:  # only out of memory is handled here; the rest is re-raised
                if largest <= 1 or not is_out_of_memory(exc):
                    raise
            # out of the except block: the failed pass's tensors are released with its traceback
            limit = (largest + 1) // 2
            log.warning("shard %s: CUDA out of memory on a forward pass of %d; retrying the batch of %d "
                        "with at most %d per pass", shard_id, largest, len(lengths), limit)
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()

    def close(self):
        self.reader.shutdown(wait=False, cancel_futures=True)
        for pool in self.all_pools:  # also those a prefetch still holds
            pool.close()
        self.parquet.close()


def _read_with_retries(shard: Shard, cfg: JobConfig):
    """All samples of a shard, read from the start on each attempt; a Rejection if it never reads."""
    attempts = max(1, cfg.source.shard_read_retries)
    last = None
    for attempt in range(attempts):
        try:
            return list(sources.read_shard(shard, cfg.source))
        except ShardReadError as exc:
            last = exc
            time.sleep(min(2.0, 0.2 * 2**attempt))
    if cfg.strict:
        raise BadInputError(f"strict: shard {shard.url} unreadable after {attempts} attempts: {last}")
    return Rejection(shard.shard_id, shard.url, "shard_unreadable", f"{attempts} attempts: {last}")
