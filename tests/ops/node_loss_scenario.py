"""A worker node is lost mid-render on a local three-node Ray; the render still succeeds, is
charged once, and the API keeps answering throughout. Run as a program by test_node_loss.py
(`python -m tests.ops.node_loss_scenario DATA_DIR`; it owns its own Ray) and prints a JSON
report as its last line.

The cluster: a head (4 CPUs, 1 `render_slot`, and a `studio_head` custom resource that no other
node has) and two workers (4 CPUs, 2 `render_slot`s each). Everything the studio cannot lose
lives on the head: every Serve replica asks for a sliver of `studio_head` (through a derived
Serve config), the HTTP proxy is head-only (and Serve pins its controller to the head), and the
detached actors (ledger, scheduler, upload manager, rate limiter) are created here first, under
their usual names, with `studio_head` too, so that the studio's own `get_if_exists` calls find
these. The workers therefore only run render tasks, and the worker removed is one that runs a
render task at that moment (if any), so the loss hits the render itself.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray
import yaml
from ray import serve
from ray.cluster_utils import Cluster
from ray.util.state import list_actors, list_tasks
from sqlmodel import func, select

from cluster.runtime import DEFAULT_SERVE_CONFIG, deploy
from cluster.settings import Settings
from db.migrate import upgrade
from db.models import Job, JobStatus, LedgerEntry, LedgerKind, User
from db.session import database_tag, session_scope
from deployments.api.ratelimit import ACTOR_NAME as RATE_LIMIT_NAME
from deployments.api.ratelimit import RateLimitActor
from pipeline.jobs.scheduler import RenderScheduler
from pipeline.ledger.actor import LEDGER_NAME, LEDGER_NAMESPACE, CreditLedger, ledger_handle
from pipeline.render.assemble import inspect_film
from pipeline.render.upload_manager import UploadManager
from pipeline.storage import open_storage
from tests.jobs.conftest import finished, job_row, settled_balance, wait_for
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
HEAD = "studio_head"  # the custom resource only the head offers
PASSWORD = "correct horse battery staple"
SPEC = {
    "title": "Node loss",
    "resolution": 360,
    "fps": 24,
    "music": {"style": "none"},
    "scenes": [
        {"prompt": f"scene {i}", "duration_s": 4, "narration": f"Scene {i} begins."}
        for i in range(3)
    ],
}


def head_config(path: Path) -> Path:
    """The default Serve config with a head-only proxy and every replica on the head."""
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
    raw["proxy_location"] = "HeadOnly"
    for app in raw["applications"]:
        for deployment in app.get("deployments", []):
            options = deployment.setdefault("ray_actor_options", {})
            options["resources"] = {**options.get("resources", {}), HEAD: 0.01}
    path.write_text(yaml.safe_dump(raw))
    return path


def pin_actors(settings: Settings) -> None:
    """Creates the studio's detached actors on the head before anything else asks for them."""
    url = settings.resolved_database_url
    on_head = {"lifetime": "detached", "get_if_exists": True, "resources": {HEAD: 0.01}}
    CreditLedger.options(  # type: ignore[attr-defined]
        name=f"{LEDGER_NAME}-{database_tag(url)}", namespace=LEDGER_NAMESPACE, **on_head
    ).remote(url)
    ledger_handle(url)  # waits for it, and checks it serves this database
    RenderScheduler.options(  # type: ignore[attr-defined]
        name=f"render_scheduler-{database_tag(url)}", namespace="studio", **on_head
    ).remote(settings)
    UploadManager.options(  # type: ignore[attr-defined]
        name="upload_manager", namespace="studio", **on_head
    ).remote()
    RateLimitActor.options(  # type: ignore[attr-defined]
        name=RATE_LIMIT_NAME, namespace="studio", **on_head
    ).remote()


def actor_nodes() -> dict[str, list[str]]:
    """The node of every live actor, by class name."""
    nodes: dict[str, list[str]] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        nodes.setdefault(actor.class_name, []).append(str(actor.node_id))
    return nodes


def running_task_nodes() -> dict[str, list[str]]:
    """The node of every running task, by function name."""
    nodes: dict[str, list[str]] = {}
    for task in list_tasks(filters=[("state", "=", "RUNNING")], limit=1000):
        if task.type == "NORMAL_TASK" and task.node_id:
            nodes.setdefault(task.name, []).append(str(task.node_id))
    return nodes


class Poller(threading.Thread):
    """Calls the API (balance, authenticated, and plans) until stopped; records every answer."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, int | str]] = []

    def run(self) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                for path, headers in (("/api/credits/balance", auth), ("/api/plans", {})):
                    try:
                        status: int | str = client.get(path, headers=headers).status_code
                    except httpx.HTTPError as error:
                        status = type(error).__name__
                    self.answers.append((time.monotonic(), path, status))
                time.sleep(0.2)


def register(url: str, settings: Settings) -> tuple[str, str]:
    """A user registered over HTTP and moved to the studio plan (its rate limit allows the
    polling); returns the user id and an access token."""
    email = f"node-loss-{time.time_ns()}@example.com"
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.post("/api/users/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        tokens = client.post("/api/users/login", json={"email": email, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
    user_id = created.json()["id"]
    with session_scope(settings.resolved_database_url) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        user.plan_code = "studio"
        session.add(user)
    return user_id, tokens.json()["access_token"]


def value(state: Any) -> str:
    return str(getattr(state, "value", state))


def main(data: Path) -> dict[str, Any]:
    data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    head_args = {"num_cpus": 4, "resources": {"render_slot": 1, HEAD: 1}}
    cluster = Cluster(
        initialize_head=True, head_node_args={**head_args, "dashboard_port": free_port()}
    )
    workers = [cluster.add_node(num_cpus=4, resources={"render_slot": 2}) for _ in range(2)]
    ray.init(
        address=cluster.address,
        namespace="studio",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = Settings(
            data_dir=data,
            render_jobs_max=1,
            port=port,
            public_url=url,
            rate_limit_per_minute_ip=100_000,
            serve_config=head_config(data / "serve_config.yaml"),
            _env_file=None,
        )
        upgrade(settings.resolved_database_url)
        pin_actors(settings)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        deploy(settings, timeout_s=300)
        studio_up_s = time.monotonic() - started

        user_id, token = register(url, settings)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=60) as client:
            before = client.get("/api/credits/balance", headers=auth).json()
            project = client.post(
                "/api/projects/create", headers=auth, json={"title": "Node loss", "spec": SPEC}
            )
            assert project.status_code == 201, project.text
            submitted = client.post(
                f"/api/projects/{project.json()['id']}/render", headers=auth, json={}
            )
            assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        poller = Poller(url, token)
        poller.start()

        job_uuid = uuid.UUID(job_id)
        wait_for(
            settings, job_uuid, lambda j: j.status == JobStatus.running and j.progress > 0, 300
        )
        # Wait (briefly) for a render task to be running on a worker, then remove that worker.
        worker_ids = {w.node_id: w for w in workers}
        tasks: dict[str, list[str]] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = running_task_nodes()
            if any(n in worker_ids for ns in tasks.values() for n in ns):
                break
            time.sleep(0.3)
        busy = [n for ns in tasks.values() for n in ns if n in worker_ids]
        victim = worker_ids[busy[0]] if busy else workers[0]
        actors_before = actor_nodes()
        at_loss = job_row(settings, job_uuid)
        lost_at = time.monotonic()
        cluster.remove_node(victim)
        removed_s = time.monotonic() - lost_at

        done = wait_for(settings, job_uuid, finished, timeout_s=600)
        render_after_loss_s = time.monotonic() - lost_at
        time.sleep(1)  # a few more API answers after the render
        poller.stop.set()
        poller.join()

        with session_scope(settings.resolved_database_url) as session:
            job = session.get(Job, job_uuid)
            assert job is not None
            captures = session.exec(
                select(func.count()).where(
                    LedgerEntry.reservation_id == job.reservation_id,
                    LedgerEntry.kind == LedgerKind.capture,
                    LedgerEntry.account.like("user:%:held"),
                )
            ).one()

        user = User(id=uuid.UUID(user_id), email="")
        available, held = settled_balance(settings, user)
        film: dict[str, Any] = {}
        if done.status == JobStatus.succeeded:
            key = done.output["outputs"]["film.mp4"]["key"]
            path = data / "downloaded.mp4"
            path.write_bytes(open_storage(settings).get_bytes(key))
            info = inspect_film(path)
            film = {
                "video_codec": info.video_codec,
                "audio_codec": info.audio_codec,
                "duration_s": info.duration_s,
            }
        during = [a for a in poller.answers if a[0] >= lost_at]
        statuses: dict[str, int] = {}
        for _, _, status in poller.answers:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        head_id = cluster.head_node.node_id
        return {
            "head_node": head_id,
            "removed_node": victim.node_id,
            "removed_was_running": sorted(t for t, ns in tasks.items() if victim.node_id in ns),
            "running_tasks_at_loss": tasks,
            "actors_at_loss": actors_before,
            "status_at_loss": value(at_loss.status),
            "progress_at_loss": at_loss.progress,
            "status": value(done.status),
            "error": done.error,
            "attempts": done.attempts,
            "credits_used": done.output.get("credits_used"),
            "available_before": before["available"],
            "available": available,
            "held": held,
            "captures": captures,
            "film": film,
            "api_statuses": statuses,
            "api_answers_after_loss": len(during),
            "api_failures": [a[1:] for a in poller.answers if a[2] != 200][:20],
            "timings_s": {
                "studio_up": round(studio_up_s, 1),
                "remove_node": round(removed_s, 1),
                "render_after_loss": round(render_after_loss_s, 1),
                "total": round(time.monotonic() - started, 1),
            },
        }
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), default=str))
