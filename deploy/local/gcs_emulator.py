#!/usr/bin/env python3
"""A Google Cloud Storage emulator speaking the XML API, for development and tests.

object_store's GCS client (and so tickflow) speaks the XML API for everything; the emulators one
can install answer most of it with 501/400, so tickflow carries this one. Its fidelity is checked
by running object_store's own conformance suite against it (tests/gcs.rs).

What it serves (https://cloud.google.com/storage/docs/xml-api/overview):
  PUT    /BUCKET                                  create a bucket
  PUT    /BUCKET/OBJECT                           upload (x-goog-if-generation-match: 0 | N)
  PUT    /BUCKET/OBJECT  x-goog-copy-source       copy (with the same precondition)
  GET    /BUCKET/OBJECT  (HEAD too)               download: Range, If-Match, If-None-Match,
                                                  If-Modified-Since, If-Unmodified-Since,
                                                  ?generation=N (older generations are kept)
  DELETE /BUCKET/OBJECT
  GET    /BUCKET?list-type=2                      prefix, delimiter, start-after, max-keys,
                                                  continuation-token
  POST   /BUCKET/OBJECT?uploads                   multipart: initiate
  PUT    /BUCKET/OBJECT?partNumber=N&uploadId=U   multipart: a part
  POST   /BUCKET/OBJECT?uploadId=U                multipart: complete
  DELETE /BUCKET/OBJECT?uploadId=U                multipart: abort
Attributes (Content-Type, Cache-Control, Content-Disposition, Content-Encoding,
Content-Language, x-goog-meta-*) are kept and returned.

Failure injection, for outage tests (not part of GCS):
  POST   /_emulator/faults   JSON {"status": 503, "count": 3}         the next 3 requests fail
                             JSON {"status": 503, "seconds": 5}       every request for 5 s
                             JSON {"stall": 2.0, "count": 1}          the next request waits 2 s
                             optional "method": "PUT", "prefix": "BUCKET/path" narrow it down
  DELETE /_emulator/faults   clears them
  GET    /_emulator/stats    JSON: requests served, faults injected, multipart uploads completed
Authentication is not checked (use a service-account key with "disable_oauth": true).
"""

import argparse
import base64
import email.utils
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

ATTRIBUTE_HEADERS = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
)


class Obj:
    __slots__ = ("data", "generation", "etag", "modified", "attrs")

    def __init__(self, data, generation, etag, attrs):
        self.data = data
        self.generation = generation
        self.etag = etag
        # Whole seconds: HTTP dates carry no more, and listings must agree with HEAD.
        self.modified = int(time.time())
        self.attrs = attrs


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.buckets = {}  # name -> {key -> Obj}
        self.versions = {}  # (bucket, key, generation) -> Obj
        self.uploads = {}  # upload id -> (bucket, key, attrs, {part -> (etag, data)})
        self.generation = int(time.time() * 1_000_000)
        self.faults = []
        self.requests = 0
        self.injected = 0
        self.multipart_completed = 0

    def next_generation(self):
        self.generation += 1
        return self.generation


STATE = State()


def http_date(seconds):
    return email.utils.formatdate(seconds, usegmt=True)


def iso_date(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def quoted(etag):
    return '"%s"' % etag


def unquote_etag(value):
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tickflow-gcs-emulator"

    def log_message(self, fmt, *args):  # quiet: tests run thousands of requests
        pass

    # ---- plumbing -------------------------------------------------------------------------

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", headers=None, content_type=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def error(self, status, code, message):
        xml = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>"
            % (code, escape(message))
        )
        self.send(status, xml, content_type="application/xml; charset=UTF-8")

    def xml(self, status, xml, headers=None):
        self.send(
            status,
            "<?xml version='1.0' encoding='UTF-8'?>" + xml,
            headers,
            content_type="application/xml; charset=UTF-8",
        )

    def parse(self):
        raw_path, _, query = self.path.partition("?")
        parts = raw_path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 and parts[1] else None
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        return bucket, key, q

    def injected_fault(self, bucket, key):
        """Applies an injected fault; returns True when the request was answered by it."""
        target = bucket + ("/" + key if key else "")
        now = time.monotonic()
        with STATE.lock:
            STATE.requests += 1
            fault = None
            for f in STATE.faults:
                if f.get("until") is not None and now > f["until"]:
                    continue
                if f.get("count") is not None and f["count"] <= 0:
                    continue
                if f.get("method") and f["method"] != self.command:
                    continue
                if f.get("prefix") and not target.startswith(f["prefix"]):
                    continue
                fault = f
                break
            if fault is None:
                return False
            if fault.get("count") is not None:
                fault["count"] -= 1
            STATE.injected += 1
        if fault.get("stall"):
            time.sleep(float(fault["stall"]))
        if fault.get("status"):
            self.body()  # drain the upload so the connection stays usable
            status = int(fault["status"])
            self.error(status, "Injected", "fault injected by the emulator (status %d)" % status)
            return True
        return False

    # ---- admin ----------------------------------------------------------------------------

    def admin(self):
        path = self.path.split("?")[0]
        if path == "/_emulator/faults" and self.command == "POST":
            try:
                fault = json.loads(self.body() or b"{}")
                if not isinstance(fault, dict):
                    raise ValueError("a fault is a JSON object")
                if "seconds" in fault:
                    fault["until"] = time.monotonic() + float(fault.pop("seconds"))
            except ValueError as e:
                return self.error(400, "InvalidArgument", "bad fault: %s" % e)
            with STATE.lock:
                STATE.faults.append(fault)
            return self.send(200, "{}", content_type="application/json")
        if path == "/_emulator/faults" and self.command == "DELETE":
            with STATE.lock:
                STATE.faults.clear()
            return self.send(204)
        if path == "/_emulator/stats":
            with STATE.lock:
                stats = {
                    "requests": STATE.requests,
                    "injected": STATE.injected,
                    "multipart_completed": STATE.multipart_completed,
                    "buckets": {b: len(o) for b, o in STATE.buckets.items()},
                }
            return self.send(200, json.dumps(stats), content_type="application/json")
        return self.error(404, "NotFound", "no such emulator endpoint")

    # ---- verbs ----------------------------------------------------------------------------

    def dispatch(self):
        if self.path.startswith("/_emulator/"):
            return self.admin()
        bucket, key, q = self.parse()
        if not bucket:
            return self.error(400, "InvalidURI", "no bucket in the request path")
        if self.injected_fault(bucket, key):
            return
        if key is None:
            if self.command == "PUT":
                return self.create_bucket(bucket)
            if self.command in ("GET", "HEAD"):
                return self.list(bucket, q)
            return self.error(405, "MethodNotAllowed", "unsupported bucket operation")
        with STATE.lock:
            exists = bucket in STATE.buckets
        if not exists:
            self.body()
            return self.error(404, "NoSuchBucket", "the bucket `%s` does not exist" % bucket)
        if self.command in ("GET", "HEAD"):
            return self.get(bucket, key, q)
        if self.command == "PUT" and "uploadId" in q:
            return self.put_part(bucket, key, q)
        if self.command == "PUT" and self.headers.get("x-goog-copy-source"):
            return self.copy(bucket, key)
        if self.command == "PUT":
            return self.put(bucket, key)
        if self.command == "POST" and "uploads" in q:
            return self.initiate(bucket, key)
        if self.command == "POST" and "uploadId" in q:
            return self.complete(bucket, key, q)
        if self.command == "DELETE" and "uploadId" in q:
            with STATE.lock:
                STATE.uploads.pop(q["uploadId"], None)
            return self.send(204)
        if self.command == "DELETE":
            return self.delete(bucket, key)
        return self.error(405, "MethodNotAllowed", "unsupported object operation")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = dispatch

    def create_bucket(self, bucket):
        self.body()
        with STATE.lock:
            if bucket in STATE.buckets:
                return self.error(409, "BucketAlreadyOwnedByYou", "the bucket exists")
            STATE.buckets[bucket] = {}
        self.send(200)

    def attributes(self):
        attrs = {}
        for name, value in self.headers.items():
            low = name.lower()
            if low in ATTRIBUTE_HEADERS or low.startswith("x-goog-meta-"):
                attrs[low] = value
        return attrs

    def precondition(self, objects, key):
        """x-goog-if-generation-match: 0 means "must not exist", N "must be generation N"."""
        want = self.headers.get("x-goog-if-generation-match")
        if want is None:
            return True
        current = objects.get(key)
        if want.strip() == "0":
            return current is None
        return current is not None and str(current.generation) == want.strip()

    def store(self, bucket, key, data, etag, attrs):
        """Stores a new generation (the caller holds the lock and checked preconditions)."""
        obj = Obj(data, STATE.next_generation(), etag, attrs)
        STATE.buckets[bucket][key] = obj
        STATE.versions[(bucket, key, obj.generation)] = obj
        return obj

    def written(self, obj):
        return {"ETag": quoted(obj.etag), "x-goog-generation": str(obj.generation)}

    def put(self, bucket, key):
        data = self.body()
        attrs = self.attributes()
        with STATE.lock:
            objects = STATE.buckets[bucket]
            if not self.precondition(objects, key):
                return self.error(412, "PreconditionFailed", "generation precondition failed")
            obj = self.store(bucket, key, data, hashlib.md5(data).hexdigest(), attrs)
        self.send(200, headers=self.written(obj))

    def copy(self, bucket, key):
        self.body()
        source = urllib.parse.unquote(self.headers["x-goog-copy-source"]).lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        with STATE.lock:
            src = STATE.buckets.get(src_bucket, {}).get(src_key)
            if src is None:
                return self.error(404, "NoSuchKey", "the copy source `%s` does not exist" % source)
            objects = STATE.buckets[bucket]
            if not self.precondition(objects, key):
                return self.error(412, "PreconditionFailed", "generation precondition failed")
            obj = self.store(bucket, key, src.data, src.etag, dict(src.attrs))
        self.xml(
            200,
            "<CopyObjectResult><LastModified>%s</LastModified><ETag>%s</ETag></CopyObjectResult>"
            % (iso_date(obj.modified), quoted(obj.etag)),
            self.written(obj),
        )

    def get(self, bucket, key, q):
        with STATE.lock:
            if "generation" in q:
                try:
                    obj = STATE.versions.get((bucket, key, int(q["generation"])))
                except ValueError:
                    obj = None
            else:
                obj = STATE.buckets[bucket].get(key)
        if obj is None:
            return self.error(404, "NoSuchKey", "the object `%s` does not exist" % key)
        h = self.headers
        # RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since.
        if h.get("If-Match") is not None:
            tags = [unquote_etag(t) for t in h["If-Match"].split(",")]
            if "*" not in tags and obj.etag not in tags:
                return self.error(412, "PreconditionFailed", "If-Match failed")
        elif h.get("If-Unmodified-Since") is not None:
            since = email.utils.parsedate_to_datetime(h["If-Unmodified-Since"]).timestamp()
            if obj.modified > since:
                return self.error(412, "PreconditionFailed", "If-Unmodified-Since failed")
        if h.get("If-None-Match") is not None:
            tags = [unquote_etag(t) for t in h["If-None-Match"].split(",")]
            if "*" in tags or obj.etag in tags:
                return self.send(304, headers={"ETag": quoted(obj.etag)})
        elif h.get("If-Modified-Since") is not None:
            since = email.utils.parsedate_to_datetime(h["If-Modified-Since"]).timestamp()
            if obj.modified <= since:
                return self.send(304, headers={"ETag": quoted(obj.etag)})
        headers = {
            "ETag": quoted(obj.etag),
            "Last-Modified": http_date(obj.modified),
            "x-goog-generation": str(obj.generation),
            "x-goog-metageneration": "1",
            "x-goog-stored-content-length": str(len(obj.data)),
        }
        for name, value in obj.attrs.items():
            headers[name] = value
        headers.setdefault("content-type", "application/octet-stream")
        size = len(obj.data)
        rng = h.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            try:
                if first == "":
                    start, end = max(size - int(last), 0), size - 1
                else:
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
            except ValueError:
                return self.error(400, "InvalidArgument", "bad Range header `%s`" % rng)
            if start >= size or start > end:
                return self.error(416, "InvalidRange", "the range is not satisfiable")
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
            ctype = headers.pop("content-type")
            return self.send(206, obj.data[start : end + 1], headers, ctype)
        ctype = headers.pop("content-type")
        self.send(200, obj.data, headers, ctype)

    def delete(self, bucket, key):
        with STATE.lock:
            if STATE.buckets[bucket].pop(key, None) is None:
                return self.error(404, "NoSuchKey", "the object `%s` does not exist" % key)
        self.send(204)

    def list(self, bucket, q):
        with STATE.lock:
            objects = STATE.buckets.get(bucket)
            if objects is None:
                return self.error(404, "NoSuchBucket", "the bucket `%s` does not exist" % bucket)
            items = sorted(objects.items())
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        start_after = q.get("start-after", "")
        max_keys = int(q.get("max-keys") or 1000)
        token = q.get("continuation-token")
        after = base64.urlsafe_b64decode(token).decode() if token else ""
        entries = []  # (name, obj or None for a common prefix), sorted, deduplicated
        seen = set()
        for key, obj in items:
            if not key.startswith(prefix) or (start_after and key <= start_after):
                continue
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if common not in seen:
                    seen.add(common)
                    entries.append((common, None))
            else:
                entries.append((key, obj))
        if after:
            entries = [e for e in entries if e[0] > after]
        page, more = entries[:max_keys], len(entries) > max_keys
        contents, prefixes = [], []
        for name, obj in page:
            if obj is None:
                prefixes.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(name))
            else:
                contents.append(
                    "<Contents><Key>%s</Key><Generation>%d</Generation><MetaGeneration>1</MetaGeneration>"
                    "<LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size></Contents>"
                    % (escape(name), obj.generation, iso_date(obj.modified), escape(quoted(obj.etag)), len(obj.data))
                )
        xml = (
            "<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>%s</Name>"
            "<Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>"
            % (escape(bucket), escape(prefix), len(page), max_keys, "true" if more else "false")
        )
        xml += "".join(contents) + "".join(prefixes)
        if more:
            next_token = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
            xml += "<NextContinuationToken>%s</NextContinuationToken>" % next_token
        self.xml(200, xml + "</ListBucketResult>")

    def initiate(self, bucket, key):
        self.body()
        upload = uuid.uuid4().hex
        with STATE.lock:
            STATE.uploads[upload] = (bucket, key, self.attributes(), {})
        self.xml(
            200,
            "<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
            "</InitiateMultipartUploadResult>" % (escape(bucket), escape(key), upload),
        )

    def put_part(self, bucket, key, q):
        data = self.body()
        try:
            number = int(q.get("partNumber", ""))
        except ValueError:
            return self.error(400, "InvalidArgument", "partNumber must be a number")
        etag = hashlib.md5(data).hexdigest()
        with STATE.lock:
            upload = STATE.uploads.get(q["uploadId"])
            if upload is None or upload[:2] != (bucket, key):
                return self.error(404, "NoSuchUpload", "no such multipart upload")
            upload[3][number] = (etag, data)
        self.send(200, headers={"ETag": quoted(etag)})

    def complete(self, bucket, key, q):
        body = self.body()
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            return self.error(400, "MalformedXML", "the CompleteMultipartUpload body: %s" % e)
        wanted = []
        for part in root.iter():
            if part.tag.split("}")[-1] != "Part":
                continue
            fields = {c.tag.split("}")[-1]: (c.text or "") for c in part}
            wanted.append((int(fields.get("PartNumber", "0")), unquote_etag(fields.get("ETag", ""))))
        with STATE.lock:
            upload = STATE.uploads.get(q["uploadId"])
            if upload is None or upload[:2] != (bucket, key):
                return self.error(404, "NoSuchUpload", "no such multipart upload")
            parts = upload[3]
            data = bytearray()
            for number, etag in wanted:
                if number not in parts or parts[number][0] != etag:
                    return self.error(400, "InvalidPart", "part %d is missing or has another ETag" % number)
                data += parts[number][1]
            digest = hashlib.md5(b"".join(bytes.fromhex(parts[n][0]) for n, _ in wanted)).hexdigest()
            obj = self.store(bucket, key, bytes(data), "%s-%d" % (digest, len(wanted)), upload[2])
            del STATE.uploads[q["uploadId"]]
            STATE.multipart_completed += 1
        self.xml(
            200,
            "<CompleteMultipartUploadResult><Location>/%s/%s</Location><Bucket>%s</Bucket><Key>%s</Key>"
            "<ETag>%s</ETag></CompleteMultipartUploadResult>"
            % (escape(bucket), escape(key), escape(bucket), escape(key), escape(quoted(obj.etag))),
            self.written(obj),
        )


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up mid-download (object_store's streaming tests do) is not an error.
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4443)
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket at start")
    parser.add_argument("--port-file", help="write the port listened on to this file")
    args = parser.parse_args()
    for b in args.bucket:
        STATE.buckets[b] = {}
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(port))
    print("gcs emulator listening on http://%s:%d" % (args.host, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
