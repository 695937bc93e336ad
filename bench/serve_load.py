"""Serving under load: N simultaneous identical edit requests to `mlflow models serve` of the registered champion
and to the web app's API, each answer checked against the request's answer alone; and a PNG bomb sent to the
model server.

    python bench/serve_load.py                    # N=20, the tiny demo model, ~2-4 min on 2 CPU cores
    python bench/serve_load.py --n 50 --steps 10  # more load
    python bench/serve_load.py --skip-web         # the MLflow server only

What runs, on loopback only (127.0.0.1, free ports; every server is killed at the end, and each wait is bounded):
1. A tiny demo artifact (the test suite's `tiny_artifact`: the tiny random SD1.5 architecture at 64 px with
   trained-looking k/v and adapter weights) is logged as the pyfunc model (`tracking.registry.log_model`) into a
   temporary sqlite store and registered (`registry.register`: it becomes `champion`), as
   tests/tracking/test_registry.py does.
2. `mlflow models serve -m models:/facepaint@champion --env-manager local -h 127.0.0.1 -p PORT` with
   MLFLOW_TRACKING_URI on that store (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT `--server-timeout`: the queue of N
   edits must fit in it; the default 60 s would answer the last ones 504 on a slow machine).
3. One request alone (a warm-up, then 3 times: the reference, and the median time alone): skimage's astronaut at
   `--size` px with her face painted as the mask, one prompt, one seed. Then N copies of it at once from a thread
   pool (a barrier releases them together): every answer must be HTTP 200 and its PNG's pixels equal to the
   reference's. Wall time from the release to the last answer, and each request's latency. The times are the
   machine's: on a shared one they vary (the json records its load average); the checks do not.
4. A PNG bomb: a 1-bit 9000x7000 PNG (63 megapixels in ~8 KB of file) as the image of a valid request. It must be
   refused with HTTP 400 naming the limit, and the server's memory must not grow: its resident set (VmRSS) and
   its high-water mark (VmHWM, the kernel's peak) before and after (decoded as RGB it would be 189 MB).
5. The web app (`facepaint.apps.web.launch`, its own process, --concurrency 1: the default) with the same
   artifact: the same N-concurrent check through its API (`/edit` with gradio_client, as
   tests/apps/test_web.py calls it; one client per request, made before the load), the photo and mask as files.
Memory: each server's process tree (the `mlflow` command and the uvicorn worker it starts, which holds the
model): the peak resident set of each process (VmHWM from /proc; Linux) and their sum, and the tree's resident
set sampled every 20 ms during the load (psutil).
Prints the figures and writes bench/results/serve_load-<cpu|cuda>.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = "a smiling woman with blond hair"
MIB = 2**20


# ------------------------------------------------------------------------------------------- inputs


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def astronaut(size: int) -> tuple[bytes, bytes]:
    """(photo PNG, mask PNG): skimage's astronaut portrait at `size` px and her face ellipse (white)."""
    import cv2
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BILINEAR)
    mask = np.zeros((512, 512), np.uint8)
    cv2.ellipse(mask, (224, 122), (40, 48), 0, 0, 360, 255, -1)  # tests/method/astronaut.py's FACE
    return png_bytes(photo), png_bytes(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def bomb(width: int = 9000, height: int = 7000) -> bytes:
    """A 1-bit PNG of `width` x `height`: a few KB of file, 63 megapixels decoded."""
    return png_bytes(Image.new("1", (width, height)))


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# ------------------------------------------------------------------------------------------ the model


def tiny_model(root: Path) -> tuple[str, str]:
    """The tests' tiny trained artifact, logged and registered as champion in a sqlite store under `root`
    (MLFLOW_TRACKING_URI is set to it). Returns (artifact dir, the champion's URI)."""
    import yaml

    from stages.common import section
    from stages.register import RegisterConfig
    from tools.tiny_artifact import save_tiny_trained_artifact, tiny_conditions
    from tracking import registry, runs

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    artifact = save_tiny_trained_artifact(root / "artifact" / "model", tiny_conditions(params, 64))
    os.environ["FACEPAINT_TRACKING"] = "on"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(root)  # MLflow's artifact root (./mlruns) in the temporary folder
    try:
        runs.Tracker().start(artifact_version=artifact.version, run_name="serve_load").end()
        uri = registry.log_model(artifact.version, artifact.path)
        cfg = section(params, "register", RegisterConfig)
        registry.register(uri, {"psnr_bg": 30.0}, registry.Gate(**cfg.gate), cfg.model_name)
    finally:
        os.chdir(cwd)
    return str(artifact.path), f"models:/{cfg.model_name}@champion"


# ------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process (its own session, so that its children are killed with it) and its log."""

    def __init__(self, cmd: list[str], env: dict, log: Path, cwd: Path):
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )

    def wait_up(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{url} did not come up:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        """The server's process and its children."""
        try:
            import psutil

            top = psutil.Process(self.proc.pid)
            return [top.pid] + [c.pid for c in top.children(recursive=True)]
        except ImportError:
            out, todo = [], [self.proc.pid]
            while todo:
                pid = todo.pop()
                out.append(pid)
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    children = (task / "children").read_text().split() if (task / "children").exists() else []
                    todo += [int(c) for c in children]
            return out
        except Exception:  # gone
            return []

    def memory(self) -> dict:
        """{pid: {"cmd", "rss_mib", "hwm_mib"}} of the process tree, from /proc/<pid>/status (Linux)."""
        out = {}
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss, hwm = (int(fields.get(key, "0 kB").split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
            out[pid] = {"cmd": cmd.strip()[:120], "rss_mib": rss, "hwm_mib": hwm}
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        self._log.close()


class RssSampler:
    """The largest sum of the resident sets of a server's process tree, sampled every `every` s while inside."""

    def __init__(self, server: Server, every: float = 0.02):
        self.server, self.every, self.peak_mib = server, every, 0.0
        self._stop = threading.Event()

    def _run(self):
        try:
            import psutil
        except ImportError:
            return
        procs = {}
        while not self._stop.is_set():
            total = 0
            for pid in self.server.pids():
                try:
                    procs.setdefault(pid, psutil.Process(pid))
                    total += procs[pid].memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mib = max(self.peak_mib, total / MIB)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def peak_memory(server: Server) -> dict:
    """The tree's processes' peak resident sets (VmHWM) and their sum, MiB."""
    mem = server.memory()
    return {
        "processes": [{"pid": pid, "cmd": m["cmd"], "peak_rss_mib": round(m["hwm_mib"], 1)} for pid, m in mem.items()],
        "peak_rss_mib_sum": round(sum(m["hwm_mib"] for m in mem.values()), 1),
        "peak_rss_mib_largest": round(max((m["hwm_mib"] for m in mem.values()), default=0.0), 1),
    }


# ------------------------------------------------------------------------------------------ the load


def at_once(n: int, call) -> tuple[list, float]:
    """`call(i)` for i < n from n threads released together: ([(result, seconds)], wall seconds)."""
    start = threading.Barrier(n + 1)

    def one(i):
        start.wait()
        t = time.perf_counter()
        result = call(i)
        return result, time.perf_counter() - t

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        start.wait()
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
    return results, time.perf_counter() - t0


def sequential(call, name: str, repeats: int = 3) -> tuple[np.ndarray, float]:
    """The request alone, `repeats` times one after the other: (its answer's pixels, the median seconds). The
    answers must agree (the reference of the load)."""
    answers, seconds = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        status, px, message = call()
        seconds.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"{name}: the request alone failed: {status}: {message}")
        answers.append(px)
    if not all(np.array_equal(a, answers[0]) for a in answers):
        raise RuntimeError(f"{name}: the same request alone got different answers")
    return answers[0], statistics.median(seconds)


def summary(results: list, wall: float, reference: np.ndarray) -> dict:
    """results: [((status, pixels or None, message), seconds)]."""
    ok = [r for (r, _) in results if r[0] == 200]
    identical = sum(1 for status, px, _ in ok if px is not None and np.array_equal(px, reference))
    seconds = [s for _, s in results]
    failures = [
        f"{f'HTTP {status}' if isinstance(status, int) else status}: {message}"
        for (status, _, message), _ in results
        if status != 200
    ]
    differ = len(ok) - identical
    failures += ["HTTP 200 but the pixels differ from the answer alone"] * differ
    return {
        "n": len(results),
        "ok": len(ok),
        "identical_to_sequential": identical,
        "failures": failures,
        "wall_s": round(wall, 2),
        "latency_s": {
            "min": round(min(seconds), 2),
            "median": round(statistics.median(seconds), 2),
            "max": round(max(seconds), 2),
        },
        "edits_per_s": round(len(ok) / wall, 2),
    }


def post(url: str, body: dict, timeout: float) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"message": raw[:300].decode(errors="replace")}
    except OSError as e:  # a timeout, a reset connection
        return 0, {"message": f"{type(e).__name__}: {e}"}


def mlflow_load(args, root: Path, env: dict, photo: bytes, mask: bytes) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", args.model_uri, "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    server = Server(
        cmd,
        {**env, "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(args.server_timeout)},
        root / "mlflow-serve.log",
        root,
    )
    try:
        t = time.perf_counter()
        server.wait_up(f"{url}/ping", 300)
        up = time.perf_counter() - t
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        params = {"steps": args.steps, "seed": args.seed, "scheduler": args.scheduler, "min_face": 32}
        request = {
            "dataframe_split": {"columns": ["image", "prompt", "mask"], "data": [[b64(photo), PROMPT, b64(mask)]]},
            "params": params,
        }

        def call(_=None):
            status, answer = post(f"{url}/invocations", request, args.request_timeout)
            if status != 200:
                return status, None, str(answer.get("message"))[:300]
            return status, pixels(base64.b64decode(answer["predictions"][0]["image"])), ""

        call()  # warm-up: the first edit loads the face models and runs torch's first call
        reference, alone = sequential(call, "mlflow models serve")
        with RssSampler(server) as sampler:
            results, wall = at_once(args.n, call)
        out = {"url": url, "start_s": round(up, 1), "alone_s": round(alone, 2), **summary(results, wall, reference)}
        out["memory"] = {**peak_memory(server), "sampled_tree_peak_rss_mib": round(sampler.peak_mib, 1)}

        # the bomb, as the image of an otherwise valid request
        data = bomb()
        before = server.memory()
        t = time.perf_counter()
        status, answer = post(
            f"{url}/invocations",
            {"dataframe_split": {"columns": ["image", "prompt"], "data": [[b64(data), PROMPT]]}, "params": params},
            args.request_timeout,
        )
        seconds = time.perf_counter() - t
        after = server.memory()
        worker = max(after, key=lambda pid: after[pid]["hwm_mib"])  # the uvicorn worker: it holds the model
        still_up = server.proc.poll() is None and urllib.request.urlopen(f"{url}/ping", timeout=5).status == 200
        out["bomb"] = {
            "file_kib": round(len(data) / 1024, 1),
            "pixels": "9000x7000 (63.0 MP)",
            "status": status,
            "message": answer.get("message"),
            "seconds": round(seconds, 3),
            "worker_pid": worker,
            "worker_rss_mib": {
                "before": round(before[worker]["rss_mib"], 1),
                "after": round(after[worker]["rss_mib"], 1),
            },
            "worker_peak_rss_mib": {
                "before": round(before[worker]["hwm_mib"], 1),
                "after": round(after[worker]["hwm_mib"], 1),
            },
            "server_still_up": still_up,
        }
        return out
    finally:
        server.stop()


def web_load(args, root: Path, env: dict, artifact: str, photo: bytes, mask: bytes) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    (root / "photo.png").write_bytes(photo)
    (root / "mask.png").write_bytes(mask)
    code = (
        "from facepaint.apps.web import launch; "
        f"launch({artifact!r}, host='127.0.0.1', port={port}, examples=None, concurrency={args.web_concurrency})"
    )
    gradio_tmp = root / "gradio"
    gradio_tmp.mkdir(exist_ok=True)
    web_env = {**env, "GRADIO_TEMP_DIR": str(gradio_tmp), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = Server([sys.executable, "-c", code], web_env, root / "web.log", REPO)
    try:
        t = time.perf_counter()
        server.wait_up(url, 300)
        up = time.perf_counter() - t
        # one client per request (made before the load: a client's handshake is not the edit's latency), and
        # one for the request alone
        clients = [
            Client(url, verbose=False, download_files=str(root / "downloads" / str(i))) for i in range(args.n + 1)
        ]

        def call(i=args.n):
            try:
                _, png, _, _ = clients[i].predict(
                    photo_path=handle_file(str(root / "photo.png")),
                    editor_value=None,
                    mask_path=handle_file(str(root / "mask.png")),
                    faces="all",
                    min_face=32,
                    prompt=PROMPT,
                    negative_prompt="",
                    seed=args.seed,
                    steps=args.steps,
                    guidance_scale=7.5,
                    strength=1.0,
                    blend=True,
                    watermark=False,
                    api_name="/edit",
                )
            except Exception as e:  # gradio_client raises the app's error
                return "the app's error", None, f"{type(e).__name__}: {e}"[:300]
            return 200, pixels(Path(png).read_bytes()), ""

        call()  # warm-up
        reference, alone = sequential(call, "the web app")
        with RssSampler(server) as sampler:
            results, wall = at_once(args.n, call)
        out = {"url": url, "start_s": round(up, 1), "alone_s": round(alone, 2), **summary(results, wall, reference)}
        out["memory"] = {**peak_memory(server), "sampled_tree_peak_rss_mib": round(sampler.peak_mib, 1)}
        return out
    finally:
        server.stop()


# -------------------------------------------------------------------------------------------- main


def show(name: str, r: dict) -> None:
    print(f"\n{name}  ({r['url']}, up in {r['start_s']} s; one request alone {r['alone_s']} s)")
    print(
        f"  {r['n']} at once: {r['ok']} answered 200, {r['identical_to_sequential']} identical to the answer alone, "
        f"{len(r['failures'])} failures; wall {r['wall_s']} s ({r['edits_per_s']} edits/s); latency min "
        f"{r['latency_s']['min']} / median {r['latency_s']['median']} / max {r['latency_s']['max']} s"
    )
    for f in r["failures"][:5]:
        print(f"    {f}")
    m = r["memory"]
    print(
        f"  peak RSS (VmHWM): largest process {m['peak_rss_mib_largest']} MiB, the tree {m['peak_rss_mib_sum']} MiB; "
        f"sampled tree peak during the load {m['sampled_tree_peak_rss_mib']} MiB"
    )
    if "bomb" in r:
        b = r["bomb"]
        print(
            f"  PNG bomb ({b['pixels']}, {b['file_kib']} KiB): HTTP {b['status']} in {b['seconds']} s: "
            f"{b['message']!r}\n"
            f"    worker RSS {b['worker_rss_mib']['before']} -> {b['worker_rss_mib']['after']} MiB, peak RSS "
            f"{b['worker_peak_rss_mib']['before']} -> {b['worker_peak_rss_mib']['after']} MiB; "
            f"server still up: {b['server_still_up']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="simultaneous requests (default 20)")
    ap.add_argument("--size", type=int, default=256, help="the photo's side in px (default 256)")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per edit (default 4)")
    ap.add_argument("--scheduler", default="ddim", choices=("ddim", "dpm"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu"), help="cpu: hide any GPU from the servers")
    ap.add_argument("--server-timeout", type=int, default=600, help="MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT, s")
    ap.add_argument("--request-timeout", type=float, default=900, help="the client's timeout per request, s")
    ap.add_argument("--web-concurrency", type=int, default=1, help="the web app's --concurrency (default 1)")
    ap.add_argument("--skip-web", action="store_true")
    ap.add_argument("--out", default=None, help="json path (default bench/results/serve_load-<device>.json)")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("--n must be at least 1")

    import torch

    from bench.common import device_name, versions, write_result

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    with tempfile.TemporaryDirectory(prefix="facepaint-serve-load-") as tmp:
        root = Path(tmp)
        os.environ["FACEPAINT_C2PA_DIR"] = str(root / "c2pa")  # the servers sign with a key made here
        print(f"logging and registering the tiny demo model in {root} ...", flush=True)
        artifact, args.model_uri = tiny_model(root)
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO)}
        photo, mask = astronaut(args.size)
        result = {
            "device": device_name(device),
            "device_type": device.type,
            "versions": versions(),
            "settings": {
                "n": args.n,
                "model": "tiny demo artifact (tiny random SD1.5 architecture, 64 px; tests' tiny_artifact)",
                "photo": f"skimage astronaut at {args.size} px, her face ellipse as the mask",
                "prompt": PROMPT,
                "steps": args.steps,
                "scheduler": args.scheduler,
                "seed": args.seed,
                "min_face": 32,
                "mlflow_scoring_server_request_timeout_s": args.server_timeout,
                "web_concurrency": args.web_concurrency,
                "cpu_count": os.cpu_count(),
            },
            # the machine's other work (a shared machine slows every figure above; the correctness checks hold)
            "load_average_1min": {"start": round(os.getloadavg()[0], 2)},
        }
        print("mlflow models serve ...", flush=True)
        result["mlflow_serve"] = mlflow_load(args, root, env, photo, mask)
        show("mlflow models serve -m models:/facepaint@champion", result["mlflow_serve"])
        if not args.skip_web:
            print("\nthe web app ...", flush=True)
            result["web_app"] = web_load(args, root, env, artifact, photo, mask)
            show("web app /edit (gradio_client)", result["web_app"])
    result["load_average_1min"]["end"] = round(os.getloadavg()[0], 2)
    print(f"\nload average (1 min) of the machine: {result['load_average_1min']}")
    write_result(result, "serve_load", device, args.out)
    bad = [k for k in ("mlflow_serve", "web_app") if k in result and result[k]["identical_to_sequential"] != args.n]
    bomb = result["mlflow_serve"]["bomb"]
    if bad or bomb["status"] != 400:
        sys.exit(f"FAILED: {', '.join(bad) or ''} {'' if bomb['status'] == 400 else 'the bomb was not refused'}")


if __name__ == "__main__":
    main()
