"""The Ray adapter of the verify check: one `Checker` (one model) per actor, rows grouped by source.

Each actor re-reads whole source shards, so rows are grouped by `source` and the groups are dealt
to actors largest first. Results come back without audio; the driver decodes the worst few again
for the report's pictures and players.
"""

from __future__ import annotations

import ray

from .verify_check import Checker, CheckSettings


@ray.remote
class VerifyActor:
    def __init__(self, settings: CheckSettings):
        self.checker = Checker(settings)

    def model_provenance(self) -> dict:
        return dict(self.checker.model.provenance)

    def check(self, rows: list[dict]) -> list[dict]:
        return self.checker.check(rows, keep_audio=False)


def check_with_ray(rows: list[dict], settings: CheckSettings, num_actors: int = 0) -> tuple[list[dict], dict]:
    """Results of `Checker.check` for `rows` (any order) and the actors' model provenance.

    num_actors 0: one per GPU when settings.device is cuda, else one per 2 CPUs (at least 1), never
    more than there are sources. Starts a local Ray (pipeline.runner.connect_ray) if none is running.
    """
    from .runner import connect_ray

    connect_ray()
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["source"], []).append(row)
    if not groups:
        return [], {}
    resources = ray.cluster_resources()
    if settings.device == "cuda":
        options, count = {"num_gpus": 1, "num_cpus": 1}, int(resources.get("GPU", 0)) or 1
    else:
        options, count = {"num_cpus": 1}, max(1, int(resources.get("CPU", 1)) // 2)
    count = max(1, min(num_actors or count, len(groups)))
    actors = [VerifyActor.options(max_restarts=1, **options).remote(settings) for _ in range(count)]
    provenance = ray.get(actors[0].model_provenance.remote())
    ordered = sorted(groups.values(), key=len, reverse=True)
    refs = [actors[i % count].check.remote(group) for i, group in enumerate(ordered)]
    results = [r for part in ray.get(refs) for r in part]
    for actor in actors:
        ray.kill(actor)
    return results, provenance
