"""The one boundary between the fleet and SkyPilot: `Launcher`. `SkyLauncher` calls SkyPilot 0.14's
Python API (sky/client/sdk.py: every call returns a request id; `sky.get` waits for its result, and
`sky.api_status` says whether a request is still pending); tests use a recording fake in its place.

All methods are called from one thread (the follower's): `launch` only submits, `poll` returns at once
or after one short request, `down` waits until the cluster is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# Cell states as the follower shows them, in order.
PROVISIONING = "provisioning"
SETTING_UP = "setting up"
RUNNING = "running"
SUCCEEDED = "succeeded"  # the job ended with exit 0
FAILED = "failed"  # the launch or the job failed


@dataclass(frozen=True)
class Launched:
    """What the launcher chose for a cell (SkyPilot's optimizer; from the cluster handle's
    launched_resources): the price is the catalog's $/h for the whole instance."""

    instance_type: str | None
    spot: bool
    usd_per_hour: float | None
    region: str | None = None


@dataclass(frozen=True)
class Progress:
    state: str  # one of the states above
    detail: str = ""  # one line: a failure's reason, SkyPilot's job status
    launched: Launched | None = None


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    status: str  # SkyPilot's ClusterStatus name: INIT | UP | STOPPED
    launched: Launched | None = None


class Launcher(Protocol):
    def launch(self, cluster: str, task: dict[str, Any], *, secrets: dict[str, str], idle_minutes: int) -> None:
        """Submit the launch of `task` as `cluster`, torn down when idle (`down=True`)."""

    def poll(self, cluster: str) -> Progress:
        """Where the cluster's launch and job stand now."""

    def down(self, cluster: str) -> None:
        """Tear the cluster down (billing stops); a cluster that is not there is not an error."""

    def clusters(self) -> list[ClusterInfo]:
        """The clusters SkyPilot knows of (this user's)."""


class SkyLauncher:
    """SkyPilot's Python API behind `Launcher`. Imports sky lazily (it creates ~/.sky on import)."""

    def __init__(self) -> None:
        import sky  # noqa: F401  (fail early with ImportError if the fleet extra is missing)

        self._launches: dict[str, Any] = {}  # cluster -> launch request id
        self._jobs: dict[str, tuple[int | None, Launched | None]] = {}

    def launch(self, cluster: str, task: dict[str, Any], *, secrets: dict[str, str], idle_minutes: int) -> None:
        import sky

        self._launches[cluster] = sky.launch(sky_task(task, secrets), cluster_name=cluster, down=True,
                                             idle_minutes_to_autostop=idle_minutes)

    def poll(self, cluster: str) -> Progress:
        import sky

        if cluster not in self._jobs:
            request = self._launches.get(cluster)
            if request is None:
                return Progress(FAILED, "never launched")
            payload = next(iter(sky.api_status([request])), None)
            status = str(getattr(payload, "status", "") or "").upper()
            if status in ("PENDING", "WAITING", "RUNNING", ""):
                return Progress(PROVISIONING, getattr(payload, "status_msg", None) or "")
            if status != "SUCCEEDED":
                error = (getattr(payload, "error", "") or status.lower()).splitlines()
                return Progress(FAILED, f"launch {status.lower()}: {error[-1] if error else ''}".strip())
            job_id, handle = sky.get(request)
            self._jobs[cluster] = (job_id, _launched(handle))
        job_id, launched = self._jobs[cluster]
        statuses = sky.get(sky.job_status(cluster, [job_id] if job_id is not None else None))
        status = next(iter(statuses.values()), None) if statuses else None
        name = getattr(status, "name", str(status)).upper() if status is not None else "UNKNOWN"
        if name in ("INIT", "PENDING", "SETTING_UP"):
            return Progress(SETTING_UP, name.lower(), launched)
        if name == "RUNNING":
            return Progress(RUNNING, "", launched)
        if name == "SUCCEEDED":
            return Progress(SUCCEEDED, "", launched)
        return Progress(FAILED, f"job {name.lower()}", launched)

    def down(self, cluster: str) -> None:
        import sky
        from sky import exceptions

        request = self._launches.pop(cluster, None)
        if request is not None and cluster not in self._jobs:
            try:
                sky.api_cancel(request)  # a launch still provisioning: stop it first
            except Exception:
                pass
        try:
            sky.get(sky.down(cluster))
        except exceptions.ClusterDoesNotExist:
            pass

    def clusters(self) -> list[ClusterInfo]:
        import sky

        out = []
        for r in sky.get(sky.status()):
            handle = getattr(r, "handle", None)
            out.append(ClusterInfo(r.name, getattr(r.status, "name", str(r.status)),
                                   _launched(handle) if handle is not None else None))
        return out


def sky_task(task: dict[str, Any], secrets: dict[str, str]):
    """The sky.Task for a cell's task config with the secrets it names filled in from `secrets` (SkyPilot's
    secrets_overrides, as `sky launch --secret NAME` does from the environment); `task` is not changed."""
    import copy

    import sky

    return sky.Task.from_yaml_config(copy.deepcopy(task), secrets_overrides=list(secrets.items()))


def _launched(handle: Any) -> Launched | None:
    res = getattr(handle, "launched_resources", None)
    if res is None:
        return None
    try:
        usd = float(res.get_cost(3600))  # the catalog's $/h for the instance (sky/resources.py)
    except Exception:
        usd = None
    return Launched(instance_type=getattr(res, "instance_type", None), spot=bool(getattr(res, "use_spot", False)),
                    usd_per_hour=usd, region=getattr(res, "region", None))
