"""ANB's benchmarks and load tests: one module each, run from the repository root with
`.venv/bin/python -m benchmarks.<module>` (scripts/bench_* and scripts/loadtest* do it).

- `api`: server CPU-ms per request of each endpoint class, next to a bare app's floor;
- `probe`: CPU of the upload check, in-process against the ffmpeg probe;
- `upload_rss`: how much `anb serve`'s memory grows while it receives a ~100 MB upload;
- `worker`: our processing pipeline against a reference one, on ~50 and ~100 MB inputs;
- `rankings`: rankings and the public list under an open-loop mix of votes and reads, with
  the Redis leaderboards and with the implementation before them (data: `rankings_data`);
- `loadtest`: the API's capacity under Locust (the users are in loadtests/locustfile.py);
- `loadtest_worker`: the video worker's videos/min with 1, 2 and 4 `anb poll` processes;
- `public_list`: the public list's SQL (EXPLAIN ANALYZE) on a league-sized database, which
  `league` seeds.

What they share: `processes` (free ports, starting and stopping servers, CPU from /proc),
`stack` (PostgreSQL, Redis, moto and Gunicorn, seed data), `media` (generated inputs),
`uploads` (multipart bodies), `figures` (ratios, fixed-width tables), `targets` (PASS/FAIL
and the exit status), `report` (the load tests' statistics and plots), `baseline_app`
(the bare app `api` measures the floor with), `timed_app` (the API with a Server-Timing
header) and `openloop` (an arrival-rate HTTP load generator).

Not part of the `anb` distribution: it measures the `anb` the interpreter imports, the
working tree's src/ (or, through PYTHONPATH, another revision's).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository: its src/, loadtests/ and git history."""
