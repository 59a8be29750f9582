"""The fake model server for benchmarks/bench_peers.py: tests/fake_server.py with replies each harness parses.

    python benchmarks/peer_server.py --latency 0.05      # prints the port, then serves; commands on stdin

Replies are a function of the request:
- a HealthBench-style grader prompt for one criterion (simple-evals', Inspect's and Bilan's all ask for
  "criteria_met"): one verdict object {"explanation": ..., "criteria_met": true/false};
- Bilan's batched grader prompt (its "CRITERIA (id, points, text):" listing): {"verdicts": [...]}, one per id;
- anything else is a candidate's turn: a deterministic answer of about 1,200 characters built from the request.
Whether a criterion is met comes from a hash of the prompt, so it is the same for every harness that sends the
same prompt, and about half are met.

Every reply waits `--latency` seconds inside the responder (so the number of requests in flight at once can be
counted). On stdin, the line `stats` prints one JSON line with the requests since the last `stats` (by kind),
how many were repeats of a request already seen (retries), the most in flight at once, and the server's own
CPU seconds; then it resets. End of stdin stops the server.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import resource
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_server import FakeModelServer, FakeReply, FakeRequest  # noqa: E402

BATCH_MARK = "CRITERIA (id, points, text):"
BATCH_ID = re.compile(r"^- (\S+) \([+-]\d+ points\): ", re.M)
SENTENCES = ["Thank you for the details you shared.", "Several common causes can explain what you describe.",
             "Rest, drink enough water and keep a note of when the symptoms start and stop.",
             "If you have chest pain, trouble breathing, confusion or a very high fever, call 15 or go to the "
             "nearest emergency department now.", "A pharmacist can advise on over-the-counter treatment.",
             "See a doctor within a few days if it does not improve or if it gets worse.",
             "Bring a list of the medicines you take and any allergies you have.",
             "This is general information and not a diagnosis; a clinician who can examine you will know more."]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def answer_for(request: FakeRequest) -> str:
    """A candidate's answer: about 1,200 characters, different for every distinct conversation."""
    seed = _digest(request.last_user_message)
    parts = [f"Answer {seed.hex()[:12]}."]
    for i in range(14):
        parts.append(SENTENCES[seed[i] % len(SENTENCES)])
    return " ".join(parts)


class Stats:
    """Counters the responder updates on the server's event loop (one thread) and the stdin reader resets."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> dict:
        with getattr(self, "lock", threading.Lock()):
            old = {k: v for k, v in vars(self).items() if k != "lock"}
            self.requests, self.candidate, self.grader, self.batched, self.retries = 0, 0, 0, 0, 0
            self.in_flight, self.max_in_flight, self.criteria_in_batches = 0, 0, 0
            self.models: dict[str, int] = {}
            self.seen: set[bytes] = set()
        old.pop("seen", None)
        old.pop("in_flight", None)
        return old


def make_responder(latency: float, stats: Stats):
    async def respond(request: FakeRequest) -> FakeReply:
        prompt = request.last_user_message
        key = _digest(json.dumps([request.model, request.system, request.messages], ensure_ascii=False))
        stats.requests += 1
        stats.retries += key in stats.seen
        stats.seen.add(key)
        stats.models[request.model] = stats.models.get(request.model, 0) + 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if BATCH_MARK in prompt:
                listing = prompt.split(BATCH_MARK, 1)[1].split("\n\n", 1)[0]
                ids = BATCH_ID.findall(listing)
                stats.batched += 1
                stats.criteria_in_batches += len(ids)
                text = json.dumps({"verdicts": [{"id": i, "explanation": "Decided by the fake grader.",
                                                 "criteria_met": _digest(prompt + i)[0] % 2 == 0} for i in ids]})
            elif "criteria_met" in prompt:
                stats.grader += 1
                text = json.dumps({"explanation": "Decided by the fake grader from a hash of the prompt.",
                                   "criteria_met": _digest(prompt)[0] % 2 == 0})
            else:
                stats.candidate += 1
                text = answer_for(request)
            if latency > 0:
                await asyncio.sleep(latency)
            return FakeReply(text=text, delay=0)
        finally:
            stats.in_flight -= 1
    return respond


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    stats = Stats()
    server = FakeModelServer(make_responder(args.latency, stats)).start()
    print(server.port, flush=True)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                now = resource.getrusage(resource.RUSAGE_SELF)
                out = stats.reset()
                out["server_cpu_s"] = (now.ru_utime - cpu.ru_utime) + (now.ru_stime - cpu.ru_stime)
                cpu = now
                server.reset()                  # FakeModelServer keeps every request; forget them between runs
                print(json.dumps(out), flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
