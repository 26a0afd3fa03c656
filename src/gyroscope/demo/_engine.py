"""The simulated inference engine: continuous batching over a fixed number of sequence slots.

How a real LLM server (vLLM, TGI) spends its time, reduced to what load tests and capacity plans
feel:

- **Slots.** At most ``slots`` sequences run at once (vLLM's ``max_num_seqs``). A request that finds
  them all busy waits in a FIFO queue of at most ``max_queue`` (beyond it: refused, 429).
- **Steps.** ONE loop advances every running sequence by one token per step, as a batcher does; it
  sleeps once per step whatever the batch size, so simulated load costs almost no CPU.
- **Step time.** ``step_ms * (1 + step_alpha * (running - 1))`` for the decode part: a bigger batch
  makes every step slower, but less than proportionally, so tokens/s across the batch rises and
  flattens as the slots fill (the knee). Sequences admitted in a step are prefilled in that same
  step, adding ``prefill_ms_per_token`` per prompt token; this stalls the other sequences' next
  token, just like prefill without chunking. ``token_delay_ms`` (a fault) is added to every step.
- **Time to first token** is therefore queue wait + the admitting step (which grows with the
  prompt's length and with the batch), and latency climbs steeply once arrivals exceed what the
  slots can serve.
- **Cancellation.** A sequence whose client went away leaves its slot at once; the next step admits
  the next waiting request.

>>> timing = Timing(step_ms=2.0, step_alpha=0.05, prefill_ms_per_token=0.01)
>>> round(timing.step_seconds(running=11, prefill_tokens=100), 4)
0.004
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Engine", "EngineStopped", "Sequence", "Timing"]

WAITING, RUNNING, FINISHED, CANCELLED = range(4)


class EngineStopped(Exception):
    """The engine was stopped while a sequence was still waiting for tokens."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """The cost model of one engine step (pure; see the module docstring)."""

    step_ms: float
    step_alpha: float
    prefill_ms_per_token: float

    def step_seconds(self, running: int, prefill_tokens: int, extra_ms: float = 0.0) -> float:
        decode = self.step_ms * (1.0 + self.step_alpha * max(0, running - 1))
        return (decode + self.prefill_ms_per_token * prefill_tokens + extra_ms) / 1000.0

    def tokens_per_second(self, running: int) -> float:
        """Steady decode throughput of the whole batch with ``running`` sequences."""
        return running / self.step_seconds(running, 0) if running > 0 else 0.0


class Sequence:
    """One request inside the engine: its sizes, progress and timestamps (loop time)."""

    __slots__ = (
        "admitted",
        "arrived",
        "finished",
        "first_token",
        "generated",
        "max_tokens",
        "prompt_tokens",
        "state",
        "waiter",
        "wake_at",
    )

    def __init__(self, prompt_tokens: int, max_tokens: int, arrived: float) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.arrived = arrived
        self.admitted = 0.0
        self.first_token = 0.0
        self.finished = 0.0
        self.generated = 0
        self.state = WAITING
        self.wake_at = 0
        self.waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        return self.state == FINISHED


class Engine:
    """Run sequences in ``slots`` batch slots; ``submit`` then ``await wait(seq, n)``.

    >>> engine = Engine(slots=2, max_queue=8, timing=Timing(step_ms=1, step_alpha=0,
    ...                 prefill_ms_per_token=0))   # await engine.start(); ...
    """

    def __init__(
        self,
        *,
        slots: int,
        max_queue: int,
        timing: Timing,
        extra_step_ms: Callable[[], float] = lambda: 0.0,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.timing = timing
        self._extra_step_ms = extra_step_ms
        self._on_step = on_step
        self._waiting: deque[Sequence] = deque()
        self._n_waiting = 0  # live entries in _waiting (cancelled ones are dropped lazily)
        self._running: list[Sequence] = []
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.steps = 0

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return self._n_waiting

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="demo-engine")

    async def stop(self) -> None:
        """Stop stepping; whoever still waits for tokens gets ``EngineStopped``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for seq in [*self._running, *self._waiting]:
            if seq.waiter is not None and not seq.waiter.done():
                seq.waiter.set_exception(EngineStopped())
        self._running.clear()
        self._waiting.clear()
        self._n_waiting = 0

    def submit(self, seq: Sequence) -> bool:
        """Queue ``seq``; False (nothing queued) when the queue is full."""
        free = max(0, self.slots - len(self._running))  # taken at the next step, not queued
        if self._n_waiting - free >= self.max_queue:
            return False
        self._waiting.append(seq)
        self._n_waiting += 1
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return True

    def cancel(self, seq: Sequence) -> None:
        """Take ``seq`` out at once, freeing its slot or its place in the queue."""
        if seq.state == RUNNING:
            self._running.remove(seq)
        elif seq.state == WAITING:
            self._n_waiting -= 1  # the deque entry is skipped when it reaches the front
        else:
            return
        seq.state = CANCELLED

    async def wait(self, seq: Sequence, tokens: int) -> None:
        """Return once ``seq`` has ``tokens`` tokens or is finished."""
        loop = asyncio.get_running_loop()
        while seq.generated < tokens and seq.state != FINISHED:
            if self._task is None:
                raise EngineStopped()
            seq.wake_at = tokens
            seq.waiter = loop.create_future()
            await seq.waiter

    # -- the loop -------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._running and not self._n_waiting:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            start = loop.time()
            prefill = self._admit(start)
            if not self._running:
                continue
            duration = self.timing.step_seconds(len(self._running), prefill, self._extra_step_ms())
            # Sleep to the step's end (not for its length) so slow wake-ups do not add up.
            await asyncio.sleep(max(0.0, start + duration - loop.time()))
            decoded = self._advance(loop.time())
            self.steps += 1
            if self._on_step is not None:
                self._on_step(prefill, decoded)

    def _admit(self, now: float) -> int:
        prefill = 0
        while len(self._running) < self.slots and self._waiting:
            seq = self._waiting.popleft()
            if seq.state != WAITING:
                continue
            self._n_waiting -= 1
            seq.state = RUNNING
            seq.admitted = now
            prefill += seq.prompt_tokens
            self._running.append(seq)
        return prefill

    def _advance(self, now: float) -> int:
        decoded = len(self._running)
        still: list[Sequence] = []
        for seq in self._running:
            seq.generated += 1
            if seq.generated == 1:
                seq.first_token = now
            if seq.generated >= seq.max_tokens:
                seq.state = FINISHED
                seq.finished = now
            else:
                still.append(seq)
                if seq.generated < seq.wake_at:
                    continue
            waiter = seq.waiter
            if waiter is not None:
                seq.waiter = None
                if not waiter.done():
                    waiter.set_result(None)
        self._running = still
        return decoded
