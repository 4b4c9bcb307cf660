"""``magi serve``: a local web page and HTTP API over one loaded model (Python's own HTTP server on loopback).

Why the standard library rather than Gradio or FastAPI: the page is one small HTML file and the API six
routes, so a threaded ``http.server`` needs no extra dependency and starts in well under a second; jobs run
one at a time on the one model, from a bounded queue.

    POST /api/jobs                 {"mode", "prompt", "chunk_prompts": {"N": "..."}, "num_frames", "seed",
                                    "image": data URL, "video": data URL, "extend": job id} -> {"id"}
    GET  /api/jobs/ID              {"state": queued|running|done|error, "chunks", "frames", "total_frames",
                                    "error", "first_chunk_s", "seconds"}
    GET  /api/jobs/ID/video.mp4    the video: while running, the fragmented MP4 growing chunk by chunk
    GET  /api/jobs/ID/latest.png   the newest frame
    POST /api/jobs/ID/prompt       {"prompt"}: the prompt of the chunks not started yet
    POST /api/jobs/ID/extend       {"prompt", "num_frames"} -> {"id"}: continue a finished job's video

A prompt set while a job runs takes effect from the next chunk: the job stops after the chunk in progress and
continues the video from its last attended chunks with the new prompt (as ``magi extend`` does). Prompts known
beforehand (``chunk_prompts``) condition their chunks directly (MAGI-1's chunk-wise text). Bad requests get a
400 with a one-line message; a full queue a 429.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from magi.errors import InputError

PAGE = Path(__file__).parent / "web" / "index.html"
MAX_BODY = 64 * 2**20  # bytes of one request (an uploaded video)


@dataclass
class Job:
    id: str
    params: dict
    folder: Path
    state: str = "queued"
    chunks: int = 0
    frames: int = 0
    total_frames: int = 0
    error: str | None = None
    first_chunk_s: float | None = None
    seconds: float | None = None
    pending_prompt: str | None = None
    latest: np.ndarray | None = None
    result: np.ndarray | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> dict:
        with self.lock:
            return {"id": self.id, "state": self.state, "chunks": self.chunks, "frames": self.frames,
                    "total_frames": self.total_frames, "error": self.error, "first_chunk_s": self.first_chunk_s,
                    "seconds": self.seconds}


class Studio:
    """The jobs of one model: a bounded queue and one worker thread."""

    def __init__(self, magi, root: Path, max_queue: int = 4):
        self.magi, self.root = magi, Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def submit(self, params: dict) -> Job:
        request = self._request(params)  # checked now: a bad request never enters the queue
        job_id = secrets.token_hex(6)
        job = Job(job_id, request, self.root / job_id)
        job.total_frames = request["num_frames"] + (request["video"].shape[0] if request["keep_input"] else 0)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the queue is full ({self.queue.maxsize} jobs waiting): try again later") from None
        self.jobs[job.id] = job
        return job

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise KeyError(job_id)
        return self.jobs[job_id]

    def set_prompt(self, job_id: str, prompt: str) -> None:
        job = self.job(job_id)
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the prompt is empty")
        with job.lock:
            if job.state not in ("queued", "running"):
                raise InputError(f"job {job_id} is {job.state}: extend it instead")
            job.pending_prompt = prompt.strip()

    def _request(self, params: dict) -> dict:
        """A job's parameters, checked and decoded (one clear ``InputError`` otherwise)."""
        if not isinstance(params, dict):
            raise InputError("the request body must be a JSON object")
        magi = self.magi
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the prompt is empty")
        chunk_prompts = params.get("chunk_prompts") or {}
        if not isinstance(chunk_prompts, dict):
            raise InputError("chunk_prompts must map chunk numbers to prompts")
        try:
            prompts = {0: prompt, **{int(k): str(v) for k, v in chunk_prompts.items()}}
        except ValueError:
            raise InputError("chunk_prompts must map chunk numbers to prompts") from None
        num_frames = _integer(params.get("num_frames", magi.frames_per_chunk * 2), "num_frames", 1, 2400)
        seed = _integer(params.get("seed", 0), "seed", 0, 2**63 - 1)
        mode = params.get("mode", "t2v")
        image = video = None
        keep_input = False
        if params.get("extend"):
            source = self.job(str(params["extend"])) if str(params["extend"]) in self.jobs else None
            if source is None or source.result is None:
                raise InputError(f"job {params['extend']} has no finished video to extend")
            mode, video, keep_input = "v2v", source.result, True
        elif mode == "i2v":
            image = _decode_image(params.get("image"))
        elif mode == "v2v":
            video = _decode_video(params.get("video"), self.root, magi)
        elif mode != "t2v":
            raise InputError(f"mode must be t2v, i2v or v2v, got {mode!r}")
        magi.request(prompts, image=image, video=None if video is None else video[-magi.context_frames():],
                     num_frames=num_frames, seed=seed)  # the pipeline's own checks
        return {"mode": mode, "prompts": prompts, "num_frames": num_frames, "seed": seed, "image": image,
                "video": video, "keep_input": keep_input}

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            try:
                self._run(job)
            except Exception as error:  # a job's failure is its own; the server keeps serving
                with job.lock:
                    job.state, job.error = "error", f"{type(error).__name__}: {error}"

    def _run(self, job: Job) -> None:
        from magi.io.video import stream_video

        p, magi = job.params, self.magi
        job.folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with job.lock:
            job.state = "running"
        made: list[np.ndarray] = []

        def batches() -> Iterator[np.ndarray]:
            if p["keep_input"]:
                made.append(p["video"])
                yield p["video"]
            prompts, remaining = p["prompts"], p["num_frames"]
            image, video = p["image"], None if p["video"] is None else p["video"][-magi.context_frames():]
            include = not p["keep_input"]
            conditioning_first = magi.cfg.sampler.procedure == "native" and p["mode"] != "t2v"
            while remaining > 0:
                new, prompt = 0, None
                chunks = magi.stream(prompts, image=image, video=video, num_frames=remaining, seed=p["seed"],
                                     include_prefix=include)
                for index, batch in enumerate(chunks):
                    made.append(batch)
                    if not (index == 0 and include and conditioning_first):  # not the conditioning frames
                        new += batch.shape[0]
                    yield batch
                    with job.lock:
                        prompt, job.pending_prompt = job.pending_prompt, None
                    if prompt is not None and new < remaining:  # continue from here with the new prompt
                        break
                else:
                    return
                chunks.close()
                remaining -= new
                video = np.concatenate(made)[-magi.context_frames():]
                prompts, image, include = {0: prompt}, None, False

        def on_batch(frames: int) -> None:
            with job.lock:
                job.chunks += 1
                job.frames = frames
                job.latest = made[-1][-1]
                if job.first_chunk_s is None and (job.chunks > 1 or p["mode"] == "t2v"):
                    job.first_chunk_s = time.perf_counter() - start

        stream_video(job.folder / "video.mp4", batches(), fps=magi.fps, on_batch=on_batch)
        with job.lock:
            job.result = np.concatenate(made)
            job.state, job.seconds = "done", time.perf_counter() - start

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class QueueFull(Exception):
    pass


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{name} must be an integer from {low} to {high}")
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{name} must be an integer from {low} to {high}") from None
    if not low <= number <= high:
        raise InputError(f"{name} {number} is out of range: use {low} .. {high}")
    return number


def _data_url_bytes(value, what: str) -> bytes:
    if not isinstance(value, str) or "," not in value:
        raise InputError(f"the {what} is missing (send it as a data URL)")
    try:
        return base64.b64decode(value.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"the {what} is not valid base64") from None


def _decode_image(value) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(_data_url_bytes(value, "image"))) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"the image cannot be read ({error})") from None


def _decode_video(value, folder: Path, magi) -> np.ndarray:
    """An uploaded video, read as ``magi generate`` reads one (the model's size and frame rate)."""
    path = folder / f"upload-{secrets.token_hex(4)}.mp4"
    path.write_bytes(_data_url_bytes(value, "video"))
    try:
        return magi.load_video(path, whole=True)
    finally:
        path.unlink(missing_ok=True)


def make_handler(studio: Studio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "magi"

        def log_message(self, format: str, *args) -> None:  # quiet: the CLI prints what matters
            pass

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            try:
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if method == "GET" and parts == []:
                    return self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
                if parts[:2] != ["api", "jobs"]:
                    return self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
                if method == "POST" and len(parts) == 2:
                    return self._json(HTTPStatus.OK, {"id": studio.submit(self._body()).id})
                job = studio.job(parts[2]) if len(parts) > 2 else None
                if job is None:
                    return self._json(HTTPStatus.NOT_FOUND, {"error": "no such job"})
                if method == "GET" and len(parts) == 3:
                    return self._json(HTTPStatus.OK, job.status())
                if method == "GET" and parts[3:] == ["video.mp4"]:
                    return self._video(job)
                if method == "GET" and parts[3:] == ["latest.png"]:
                    return self._latest(job)
                if method == "POST" and parts[3:] == ["prompt"]:
                    studio.set_prompt(job.id, self._body().get("prompt"))
                    return self._json(HTTPStatus.OK, job.status())
                if method == "POST" and parts[3:] == ["extend"]:
                    body = self._body()
                    body = body | {"extend": job.id} if isinstance(body, dict) else body
                    return self._json(HTTPStatus.OK, {"id": studio.submit(body).id})
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {method} {self.path}"})
            except KeyError:
                return self._json(HTTPStatus.NOT_FOUND, {"error": "no such job"})
            except InputError as error:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            except QueueFull as error:
                return self._json(HTTPStatus.TOO_MANY_REQUESTS, {"error": str(error)})
            except Exception as error:  # never a crash: the next request is served
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"})

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise InputError(f"the request is {length} bytes; at most {MAX_BODY} are accepted")
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise InputError("the request body is not JSON") from None

        def _video(self, job: Job) -> None:
            from magi.io.video import partial_path

            final = job.folder / "video.mp4"
            path = final if final.exists() else partial_path(final)
            if not path.exists():
                return self._json(HTTPStatus.NOT_FOUND, {"error": "no frames yet"})
            self._send(HTTPStatus.OK, path.read_bytes(), "video/mp4")

        def _latest(self, job: Job) -> None:
            from PIL import Image

            with job.lock:
                frame = job.latest
            if frame is None:
                return self._json(HTTPStatus.NOT_FOUND, {"error": "no frames yet"})
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="PNG")
            self._send(HTTPStatus.OK, buffer.getvalue(), "image/png")

        def _json(self, status: HTTPStatus, data: dict) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A started server (in a thread): ``server.shutdown()`` stops it."""
    server = ThreadingHTTPServer((host, port), make_handler(studio))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
