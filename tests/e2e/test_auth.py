"""Who may call kilnd, end to end against a real kilnd: the bootstrap admin
token, API tokens of several teams and roles through the CLI (create, login,
revoke), team isolation on the native API, browser safety, a read-only SageMaker
key, the audit log, and the limit on failed authentications."""
import json
import os
import shutil
import stat
import tempfile
import time
import unittest
import urllib.parse

import botocore.exceptions

from test_kilnd import KilndHarness, unique


class AuthE2E(KilndHarness):

    def token(self, name, team, role):
        out = self.kiln("tokens", "create", "--name", name, "--team", team, "--role", role)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def test_01_the_bootstrap_token_is_roots_and_the_cli_on_this_host_finds_it(self):
        path = os.path.join(self.data, "admin.token")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, 0)
        # No token given: the CLI reads it from the data dir.
        out = self.kiln("--data-dir", self.data, "whoami", token="")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("bootstrap", out.stdout)
        self.assertIn("role admin", out.stdout)

    def test_02_no_wrong_or_malformed_credential_is_401_and_changes_nothing(self):
        name = unique("anon")
        spec = self.spec(name, ["/bin/true"])
        for token in ("", "kiln_AAAAAAAAAAAAAAAA_" + "a" * 43, "not-a-token", self.admin_token + "x"):
            st, body = self.api("POST", "/v1/jobs", spec, token=token)
            self.assertEqual(st, 401, (token, body))
            self.assertEqual(body["error"]["code"], "Unauthenticated")
        st, _ = self.api("GET", "/v1/jobs/" + name)
        self.assertEqual(st, 404)
        st, _ = self.http("GET", "/v1/health", token="")
        self.assertEqual(st, 200)
        for path in ("/v1/jobs", "/v1/events?follow=false", "/metrics", "/v1/keys", "/v1/audit"):
            st, _ = self.http("GET", path, token="")
            self.assertEqual(st, 401, path)

    def test_03_teams_see_only_their_own_jobs_on_every_route(self):
        ads = self.token("ana", "ads", "member")
        web = self.token("wes", "web", "member")
        job = self.api("POST", "/v1/jobs", self.spec(unique("adsjob"), ["/bin/echo", "ads-private"]), token=ads)[1]
        self.assertEqual(job["spec"]["team"], "ads")
        self.wait_terminal(job["id"])
        for path in ("/v1/jobs/%s", "/v1/jobs/%s/logs", "/v1/jobs/%s/metrics", "/v1/jobs/%s/events?follow=false",
                     "/v1/instances?job=%s"):
            st, text = self.http("GET", path % job["id"], token=web)
            self.assertEqual(st, 404, (path, text))
            self.assertNotIn("ads-private", text)
            st, text = self.http("GET", path % job["id"], token=ads)
            self.assertEqual(st, 200, (path, text))
        for path in ("/v1/jobs?limit=1000", "/v1/events?follow=false", "/v1/instances"):
            st, text = self.http("GET", path, token=web)
            self.assertEqual(st, 200, text)
            self.assertNotIn(job["id"], text, path)
        # Indistinguishable from a job that does not exist.
        _, theirs = self.api("GET", "/v1/jobs/" + job["id"], token=web)
        _, none = self.api("GET", "/v1/jobs/j-0000000000000000", token=web)
        self.assertEqual(theirs["error"]["message"].replace(job["id"], "X"),
                         none["error"]["message"].replace("j-0000000000000000", "X"))
        st, _ = self.api("POST", "/v1/jobs/%s/stop" % job["id"], token=web)
        self.assertEqual(st, 404)
        # A member may not act for another team, nor touch its secrets.
        st, body = self.api("POST", "/v1/jobs", self.spec(unique("x"), ["/bin/true"], team="ads"), token=web)
        self.assertEqual((st, body["error"]["field"]), (403, "team"))
        st, _ = self.http("PUT", "/v1/secrets/ads/KEY", b"v", {"Content-Type": "application/octet-stream"}, token=web)
        self.assertEqual(st, 403)

    def test_04_login_keeps_the_token_0600_and_a_revoked_token_stops_at_once(self):
        viewer = self.token("vic", "ads", "viewer")
        with tempfile.TemporaryDirectory(dir="/var/tmp") as home:
            env_home = {"XDG_CONFIG_HOME": home}
            out = self.kiln_in(env_home, "login", "--with-token", viewer)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("vic (team ads, viewer)", out.stdout)
            kept = os.path.join(home, "kiln", "token")
            self.assertEqual(stat.S_IMODE(os.stat(kept).st_mode), 0o600)
            out = self.kiln_in(env_home, "jobs", "list")
            self.assertEqual(out.returncode, 0, out.stderr)
            out = self.kiln_in(env_home, "run", os.devnull)  # a viewer may not submit (or the spec is refused)
            self.assertNotEqual(out.returncode, 0)
            out = self.kiln("tokens", "list", "--team", "ads", "--json")
            tid = [t["id"] for t in json.loads(out.stdout)["tokens"] if t["name"] == "vic"][0]
            self.assertNotIn(viewer, out.stdout)  # never the token itself
            out = self.kiln("tokens", "revoke", tid)
            self.assertEqual(out.returncode, 0, out.stderr)
            out = self.kiln_in(env_home, "jobs", "list")
            self.assertEqual(out.returncode, 2)
            self.assertIn("error 401", out.stderr)
            self.assertIn("revoked", out.stderr)

    def kiln_in(self, extra_env, *args):
        import subprocess
        env = dict(os.environ, **extra_env)
        env.pop("KILN_API_TOKEN", None)
        return subprocess.run([os.path.join(self.bin, "kiln"), "--endpoint", self.addr] + list(args),
                              capture_output=True, text=True, timeout=60, cwd=self.tmp, env=env)

    def test_05_browsers_cannot_drive_the_api(self):
        name = unique("csrf")
        spec = json.dumps(self.spec(name, ["/bin/true"])).encode()
        st, _ = self.http("POST", "/v1/jobs", spec, {"Origin": "http://evil.example"})
        self.assertEqual(st, 403)
        st, _ = self.http("POST", "/v1/jobs", spec, {"Content-Type": "text/plain"})
        self.assertEqual(st, 415)
        st, _ = self.api("GET", "/v1/jobs/" + name)
        self.assertEqual(st, 404)

    def test_06_a_viewer_key_reads_but_cannot_change_on_the_sagemaker_api(self):
        out = self.kiln("keys", "create", "--team", "ads", "--role", "viewer", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        k = json.loads(out.stdout)
        import boto3
        import botocore.config
        sm = boto3.session.Session(aws_access_key_id=k["access_key_id"], aws_secret_access_key=k["secret_access_key"],
                                   region_name="us-east-1").client(
            "sagemaker", endpoint_url="http://" + self.addr, config=botocore.config.Config(retries={"max_attempts": 1}))
        sm.list_training_jobs()
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.stop_training_job(TrainingJobName="whatever")
        self.assertEqual(cm.exception.response["Error"]["Code"], "AccessDeniedException")

    def test_07_the_audit_log_records_who_did_what_from_where(self):
        ads_admin = self.token("ada", "ads", "team-admin")
        st, _ = self.http("PUT", "/v1/secrets/ads/AUDITED", b"v", {"Content-Type": "application/octet-stream"},
                          token=ads_admin)
        self.assertEqual(st, 200)
        st, _ = self.http("PUT", "/v1/secrets/web/NOPE", b"v", {"Content-Type": "application/octet-stream"},
                          token=ads_admin)
        self.assertEqual(st, 403)
        out = self.kiln("audit", "--team", "ads", "--limit", "1000", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = [(r["name"], r["method"], r["path"], r["status"], r["source"]) for r in json.loads(out.stdout)["records"]]
        self.assertIn(("ada", "PUT", "/v1/secrets/ads/AUDITED", 200, "127.0.0.1"), rows)
        self.assertIn(("ada", "PUT", "/v1/secrets/web/NOPE", 403, "127.0.0.1"), rows)
        # A team admin reads its own team's log only.
        st, body = self.api("GET", "/v1/audit?team=default&limit=1000", token=ads_admin)
        self.assertEqual(st, 200)
        self.assertEqual({r["team"] for r in body["records"]}, {"ads"})

    def test_08_open_streams_are_bounded_per_caller_and_hold_no_thread(self):
        import http.client
        viewer = self.token("streamer", "ads", "viewer")
        host, port = self.addr.rsplit(":", 1)
        conns, statuses = [], []
        try:
            for _ in range(257):  # api.max_streams_per_principal: 256
                c = http.client.HTTPConnection(host, int(port), timeout=30)
                c.request("GET", "/v1/events", headers={"Authorization": "Bearer " + viewer})
                r = c.getresponse()  # held: a stream's connection closes with its response
                statuses.append(r.status)
                conns.append((c, r))
            self.assertEqual(statuses, [200] * 256 + [429])
            # 256 idle streams are more than kilnd has worker threads (32): others
            # are still served, and a job runs to its end while they are open.
            st, _ = self.http("GET", "/v1/health", token="")
            self.assertEqual(st, 200)
            name = unique("bystreams")
            st, body = self.api("POST", "/v1/jobs", self.spec(name, ["/bin/echo", "streamed"]))
            self.assertEqual(st, 201, body)
            self.assertEqual(self.wait_terminal(body["id"])["status"], "Completed")
        finally:
            for c, r in conns:
                r.close()
                c.close()

    def test_09_huge_headers_and_slow_requests_are_cut_off(self):
        import socket
        host, port = self.addr.rsplit(":", 1)
        # A 100 KB header: refused (headers are bounded: 16 KB).
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
            self.assertTrue(s.recv(200).startswith(b"HTTP/1.1 431"))
        # Headers that stop coming: answered 408 and closed at the read timeout (5 s).
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            self.assertTrue(s.recv(200).startswith(b"HTTP/1.1 408"))
        # A client that trickles a byte every 0.5 s is cut off the same way (slowloris).
        with socket.create_connection((host, int(port)), timeout=30) as s:
            started, answer = time.monotonic(), b""
            for ch in b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([ch]))
                except OSError:
                    break
                s.settimeout(0.5)
                try:
                    answer = s.recv(200)
                    break
                except socket.timeout:
                    continue
            self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer)
            self.assertLess(time.monotonic() - started, 20)
        st, _ = self.http("GET", "/v1/health", token="")
        self.assertEqual(st, 200)

    def test_99_failed_authentications_are_limited_per_address(self):
        # Last: it locks this address out for a minute.
        # 20 failures a minute per address (api.failed_auth_per_minute); the tests
        # before this one spent a few.
        statuses = [self.http("GET", "/v1/jobs", token="kiln_AAAAAAAAAAAAAAAA_" + "b" * 43)[0] for _ in range(25)]
        first = statuses.index(429)
        self.assertGreater(first, 10, statuses)
        self.assertEqual(statuses[:first], [401] * first)
        self.assertEqual(statuses[first:], [429] * (25 - first))
        st, _ = self.http("GET", "/v1/jobs")  # even a good token, from this address, for now
        self.assertEqual(st, 429)
        st, _ = self.http("GET", "/v1/health", token="")
        self.assertEqual(st, 200)


_STREAMS_CONFIG_DIR = tempfile.mkdtemp(prefix="kiln-streams-config-", dir="/var/tmp")
os.chmod(_STREAMS_CONFIG_DIR, 0o755)
with open(os.path.join(_STREAMS_CONFIG_DIR, "kilnd.yaml"), "w") as _f:
    _f.write("api:\n  max_streams: 12000\n  max_streams_per_principal: 12000\n"
             "  max_connections_per_address: 12000\n")


class ManyStreamsE2E(KilndHarness):
    """10,000 idle event streams while a job runs: nothing else waits on them."""
    KILND_ARGS = ["--config", os.path.join(_STREAMS_CONFIG_DIR, "kilnd.yaml")]

    def test_10000_idle_streams_while_a_job_runs(self):
        import resource
        import select
        import socket
        n = 10000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < n + 500:
            self.skipTest("the open-file limit (%d) is below %d" % (hard, n + 500))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        st, sleeper = self.api("POST", "/v1/jobs", self.spec(unique("sleeper"), ["/bin/sleep", "300"]))
        self.assertEqual(st, 201, sleeper)
        self.wait_job(sleeper["id"], lambda j: j["secondary_status"] == "Training", "Training")
        host, port = self.addr.rsplit(":", 1)
        req = ("GET /v1/jobs/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % (sleeper["id"], self.admin_token)).encode()
        socks, heads = [], {}
        try:
            for _ in range(n):
                s = socket.create_connection((host, int(port)), timeout=60)
                s.sendall(req)
                s.setblocking(False)
                socks.append(s)
                heads[s.fileno()] = b""
            poller = select.epoll()
            for fd in heads:
                poller.register(fd, select.EPOLLIN)
            by_fd = {s.fileno(): s for s in socks}
            ok, deadline = 0, time.monotonic() + 120
            while heads and time.monotonic() < deadline:
                for fd, _ in poller.poll(1.0):
                    heads[fd] += by_fd[fd].recv(65536)
                    if b"\r\n\r\n" in heads[fd]:
                        ok += heads[fd].startswith(b"HTTP/1.1 200")
                        poller.unregister(fd)
                        del heads[fd]
            poller.close()
            self.assertEqual(ok, n)
            # Health, describe and a whole job while all 10,000 are open.
            st, _ = self.http("GET", "/v1/health", token="")
            self.assertEqual(st, 200)
            st, _ = self.api("GET", "/v1/jobs/" + sleeper["id"])
            self.assertEqual(st, 200)
            st, job = self.api("POST", "/v1/jobs", self.spec(unique("during"), ["/bin/echo", "ok"]))
            self.assertEqual(st, 201, job)
            self.assertEqual(self.wait_terminal(job["id"])["status"], "Completed")
            # Stopping the sleeper ends every one of its streams.
            st, _ = self.api("POST", "/v1/jobs/%s/stop" % sleeper["id"])
            self.assertEqual(st, 202)
            self.wait_terminal(sleeper["id"])
            ended, deadline = 0, time.monotonic() + 120
            for s in socks:
                s.setblocking(True)
                s.settimeout(max(1, deadline - time.monotonic()))
                data = b""
                try:
                    while not data.endswith(b"0\r\n\r\n"):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                ended += data.endswith(b"0\r\n\r\n")
            self.assertEqual(ended, n)
        finally:
            for s in socks:
                s.close()


def _oidc_setup():
    """A signing key of an identity provider made here, its JWKS and kilnd's config."""
    import base64
    from cryptography.hazmat.primitives.asymmetric import rsa
    d = tempfile.mkdtemp(prefix="kiln-oidc-", dir="/var/tmp")
    os.chmod(d, 0o755)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    num = lambda n: b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump({"keys": [{"kty": "RSA", "kid": "idp-1", "use": "sig", "n": num(pub.n), "e": num(pub.e)}]}, f)
    with open(os.path.join(d, "kilnd.yaml"), "w") as f:
        f.write("auth:\n  oidc:\n    issuer: https://idp.example.com\n    audience: kiln\n"
                "    jwks_file: %s\n    team_claim: groups\n    team_prefix: kiln-\n    role_claim: kiln_role\n"
                % os.path.join(d, "jwks.json"))
    return d, key, b64


_OIDC_DIR, _OIDC_KEY, _B64 = _oidc_setup()


def tearDownModule():
    shutil.rmtree(_OIDC_DIR, ignore_errors=True)
    shutil.rmtree(_STREAMS_CONFIG_DIR, ignore_errors=True)


class OidcE2E(KilndHarness):
    """Tokens from an identity provider (a key made here; no network)."""
    KILND_ARGS = ["--config", os.path.join(_OIDC_DIR, "kilnd.yaml")]

    def jwt(self, groups, role=None, exp_in=600, email="ada@example.com"):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        now = int(time.time())
        claims = {"iss": "https://idp.example.com", "aud": "kiln", "sub": "u-" + email, "email": email,
                  "groups": groups, "iat": now, "exp": now + exp_in}
        if role:
            claims["kiln_role"] = role
        part = _B64(json.dumps({"alg": "RS256", "kid": "idp-1"}).encode()) + "." + _B64(json.dumps(claims).encode())
        sig = _OIDC_KEY.sign(part.encode(), padding.PKCS1v15(), hashes.SHA256())
        return part + "." + _B64(sig)

    def test_1_a_provider_token_acts_as_its_team_and_role(self):
        ada = self.jwt(["staff", "kiln-ads"])
        st, me = self.api("GET", "/v1/whoami", token=ada)
        self.assertEqual(st, 200, me)
        self.assertEqual((me["name"], me["team"], me["role"], me["credential"]),
                         ("ada@example.com", "ads", "member", "oidc"))
        st, job = self.api("POST", "/v1/jobs", self.spec(unique("oidc"), ["/bin/true"]), token=ada)
        self.assertEqual(st, 201, job)
        self.assertEqual(job["spec"]["team"], "ads")
        # Another team's member does not see it; a viewer of ads sees it but cannot submit.
        bob = self.jwt(["kiln-web"], email="bob@example.com")
        st, _ = self.api("GET", "/v1/jobs/" + job["id"], token=bob)
        self.assertEqual(st, 404)
        viewer = self.jwt(["kiln-ads"], role="viewer", email="vic@example.com")
        st, _ = self.api("GET", "/v1/jobs/" + job["id"], token=viewer)
        self.assertEqual(st, 200)
        st, body = self.api("POST", "/v1/jobs", self.spec(unique("no"), ["/bin/true"]), token=viewer)
        self.assertEqual(st, 403, body)
        # The CLI takes it like any token.
        out = self.kiln("whoami", token=ada)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("ada@example.com", out.stdout)

    def test_2_expired_forged_and_teamless_tokens_are_401(self):
        st, body = self.api("GET", "/v1/jobs", token=self.jwt(["kiln-ads"], exp_in=-120))
        self.assertEqual((st, body["error"]["message"]), (401, "JWT has expired"))
        good = self.jwt(["kiln-ads"])
        # The signature's first character, changed (to one it is not: it may already be "A").
        at = good.rfind(".") + 1
        forged = good[:at] + ("A" if good[at] != "A" else "B") + good[at + 1:]
        self.assertNotEqual(forged, good)
        st, body = self.api("GET", "/v1/jobs", token=forged)
        self.assertEqual((st, body["error"]["message"]), (401, "JWT signature is invalid"))
        st, body = self.api("GET", "/v1/jobs", token=self.jwt(["staff"]))
        self.assertEqual(st, 401, body)
        # Admin is only what the provider says.
        st, body = self.api("GET", "/v1/audit", token=self.jwt(["kiln-ads"], role="admin"))
        self.assertEqual(st, 200, body)


if __name__ == "__main__":
    unittest.main()
