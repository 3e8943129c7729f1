"""The model server: `python -m pivot_trainer.serve`, one per ModelServer pod.

Configured from env alone (settings.py: PIVOT_SERVE_* plus the trainer's S3 names). At start it
opens its port (/healthz answers, /ready says 503), downloads the checkpoint, checks its SHA-256
(a mismatch exits 3 naming both digests; a missing or unloadable checkpoint exits 4; S3 out of
reach exits 1, which the operator retries), rebuilds the UNet from the checkpoint's own config,
puts it in eval mode (bf16 autocast and channels_last on CUDA, torch.compile when asked), runs a
warm-up batch, and only then answers /ready with 200. POST /predict takes PNGs (8/16-bit
grayscale) or .npy arrays, as multipart `file` parts, JSON with base64, or one raw body; the
answer lists each image's lesion candidates, found as the trainer's val_froc finds them
(model.find_candidates). SIGTERM turns /ready to 503 at once, keeps answering predictions for
a lame-duck period (3 s: the pod leaves its Service's endpoints meanwhile), then turns new ones
to 503, lets the requests in progress finish, and exits 0.

Threads: the event loop (HTTP, parsing, batching: batcher.py), one model thread (forward pass
and candidates; torch releases the GIL in its kernels, so the loop keeps reading requests and
filling the next batch meanwhile), and a pool of two for decoding large bodies and encoding
large masks, so that neither stalls the loop.

The HTTP stack is aiohttp, on uvloop where it is installed. What decided it is the CPU a stack
takes per request, since on a CPU node that is taken from the model on the same cores. Measured
here (2 shared cores, the load generator on the same cores; a multipart POST of one 32x32
float32 .npy answered with ~300 bytes of JSON, no model), server CPU per request and requests/s
with 32 keep-alive clients:

    aiohttp + uvloop                        140 us   6,950 req/s
    aiohttp, plain asyncio                  160 us   3,670 req/s
    uvicorn (httptools) + Starlette         127-143 us   6,300-7,090 req/s
    uvicorn + FastAPI (UploadFile)          267-277 us   2,880-3,450 req/s

FastAPI's per-request dependency and validation layers double the CPU each request costs, so it
is out. Starlette on uvicorn is on par with aiohttp, but it is three packages (uvicorn,
starlette, python-multipart) against one, spools file parts into temporary files, and has no
hook to count a body's bytes before it is buffered. aiohttp streams the body, so PIVOT_SERVE_
MAX_BYTES is enforced while reading (413 before anything large is held), it sets TCP_NODELAY
on its connections (so no Nagle delay as in uvicorn issue #3149, DESIGN.md), and its runner
lets the process choose when to stop listening, which is what draining needs. uvloop halves
the loop's overhead under concurrency (3,670 -> 6,950 req/s above); without it the server
runs on asyncio unchanged.

End to end (UNet width 16, 48x48 images, one npy per request; the 2 cores shared with other
tenants at load 2-5 and with the load generator): with 32 clients, dynamic batching (16
images, 5 ms) served 305-335 images/s against 116-140 with batches of one (2.2-2.8x), p50
93-101 ms against 229-271 ms; one client sees a p50 of 8-9 ms with batches of one and 11.2-11.6
ms with the 5 ms delay. Under 32 clients a batch of 16 took 57 ms (forward and candidates) on
the server's model thread, against 44-49 ms for the same call in a process of its own beside
it (one intra-op thread each): that difference is what the HTTP side costs the model here. A
GIL switch interval of 0.5 ms instead of 5 changed nothing (57-66 ms), so the model thread does
not queue for the GIL behind the event loop. Beyond the model, a request costs ~0.9 ms (read,
decode, queue, two thread hand-offs, the JSON answer) at one client.
"""
