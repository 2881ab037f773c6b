"""An EHR's FHIR R4 server with SMART Backend Services, on 127.0.0.1.

It answers as a real one does over HTTP: the SMART configuration; a token
endpoint that verifies the client assertion's signature, audience, expiry and
jti against the client's registered public key; 401 for a token that expired;
paged searchsets (``link[next]``) with ``_include``; reads with ETags; updates
honouring ``If-Match`` (412 when stale); conditional ``Communication`` create
(``If-None-Exist``); ``Slot`` search. Every resource it receives is validated
with the FHIR models (R4B, the R4 line) and refused with 400 and an
OperationOutcome when invalid; ``invalid`` lists what it refused.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .base import FakeServer

FHIR_JSON = "application/fhir+json"


def outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def new_key_pair(algorithm: str = "RS384") -> tuple[str, str]:
    """(private PEM, public PEM) for RS384 (RSA 2048) or ES384 (P-384)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS384" \
        else ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def _validate(resource: dict) -> str:
    """"" when ``resource`` validates as FHIR R4 (R4B models); else why not."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(str(resource.get("resourceType"))).model_validate(resource)
    except Exception as exc:  # noqa: BLE001
        return str(exc)[:500]
    return ""


class FakeFhir(FakeServer):
    prefix = "/fhir"

    def reset_state(self) -> None:
        self.clients: dict[str, dict] = {}  # client_id -> {"public_key", "algorithm"}
        self.token_ttl_s = 300
        self.tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self.issued: list[dict] = []  # {"client_id", "scope", "kid"} of every token issued
        self.refused_assertions: list[str] = []
        self.jtis: set[str] = set()
        self.patients: dict[str, dict] = {}
        self.appointments: dict[str, dict] = {}
        self.slots: dict[str, dict] = {}
        self.communications: dict[str, dict] = {}
        self.invalid: list[dict] = []  # {"path", "error"} of refused payloads
        self.max_page = 50
        #: a status the next request for a page after the first answers (once)
        self.fail_next_page: int | None = None
        self._ids = itertools.count(1)
        self._state_lock = threading.Lock()

    # --- test set-up -------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.url + "/auth/token"

    def register_client(self, client_id: str, public_key_pem: str = "", algorithm: str = "RS384", *,
                        jwks_url: str = "") -> None:
        """A backend client: its public key, or the URL of its JWKS (fetched at each token request)."""
        self.clients[client_id] = {"public_key": public_key_pem, "algorithm": algorithm, "jwks_url": jwks_url}

    def expire_tokens(self) -> None:
        """Every issued token is past its expiry from now on."""
        with self._state_lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def add_patient(self, fhir_id: str, *, given="Ada", family="Lovelace", phone="+14155550123", mrn=None,
                    language=None, tz=None, birth_date="1985-12-10", **extra) -> dict:
        resource = {
            "resourceType": "Patient", "id": fhir_id, "meta": {"versionId": "1"},
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn or f"MRN-{fhir_id}"}],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "birthDate": birth_date,
        }
        if phone:
            resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if language:
            resource["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]},
                                          "preferred": True}]
        if tz:
            resource["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/tz-code", "valueCode": tz}]
        resource.update(extra)
        self.patients[fhir_id] = resource
        return resource

    def add_appointment(self, fhir_id: str, patient_id: str, start: str, end: str | None = None, *,
                        status: str = "booked", slot: str | None = None) -> dict:
        resource = {
            "resourceType": "Appointment", "id": fhir_id, "meta": {"versionId": "1"}, "status": status,
            "start": start, "end": end or start,
            "participant": [
                {"actor": {"reference": f"Patient/{patient_id}"}, "status": "needs-action"},
                {"actor": {"reference": "Practitioner/dr-rivera", "display": "Dr. Rivera"}, "status": "accepted"},
            ],
        }
        if slot:
            resource["slot"] = [{"reference": f"Slot/{slot}"}]
        self.appointments[fhir_id] = resource
        return resource

    def add_slot(self, fhir_id: str, start: str, end: str, *, schedule="Schedule/dr-rivera", status="free") -> dict:
        resource = {"resourceType": "Slot", "id": fhir_id, "meta": {"versionId": "1"},
                    "schedule": {"reference": schedule}, "status": status, "start": start, "end": end}
        self.slots[fhir_id] = resource
        return resource

    def change(self, resource: dict, **fields) -> None:
        """An edit made in the EHR meanwhile (bumps the version: our ETag goes stale)."""
        with self._state_lock:
            resource.update(fields)
            resource["meta"]["versionId"] = str(int(resource["meta"]["versionId"]) + 1)

    # --- routes ------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/fhir/.well-known/smart-configuration", self.smart_configuration)
        app.router.add_post("/auth/token", self.token)
        app.router.add_get("/fhir/Appointment", self.search_appointments)
        app.router.add_get("/fhir/Slot", self.search_slots)
        app.router.add_get("/fhir/{kind}/{id}", self.read)
        app.router.add_put("/fhir/{kind}/{id}", self.update)
        app.router.add_post("/fhir/Communication", self.create_communication)

    async def smart_configuration(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.api_url,
            "token_endpoint": self.token_url,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.read", "system/*.write"],
            "capabilities": ["client-confidential-asymmetric"],
        })

    def _refuse_token(self, why: str) -> web.Response:
        self.refused_assertions.append(why)
        return web.json_response({"error": "invalid_client", "error_description": why}, status=401)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return web.json_response({"error": "invalid_request", "error_description": "client_assertion_type"},
                                     status=400)
        assertion = form.get("client_assertion") or ""
        try:
            claimed = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return self._refuse_token(f"unreadable assertion: {exc}")
        client = self.clients.get(claimed.get("iss"))
        if client is None:
            return self._refuse_token("unknown client")
        key = client["public_key"]
        if client["jwks_url"]:
            import aiohttp

            kid = jwt.get_unverified_header(assertion).get("kid")
            async with aiohttp.ClientSession() as session:
                async with session.get(client["jwks_url"]) as response:
                    jwks = await response.json() if response.status == 200 else {"keys": []}
            found = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
            if not found:
                return self._refuse_token(f"no key {kid!r} in the client's JWKS")
            client = {**client, "algorithm": found[0].get("alg", client["algorithm"])}
            key = jwt.PyJWK(found[0]).key
        try:
            claims = jwt.decode(
                assertion, key, algorithms=[client["algorithm"]], audience=self.token_url,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return self._refuse_token(f"{type(exc).__name__}: {exc}")
        if claims["sub"] != claims["iss"]:
            return self._refuse_token("sub must equal iss")
        if claims["exp"] > time.time() + 300 + 5:
            return self._refuse_token("assertion lives longer than five minutes")
        if claims["jti"] in self.jtis:
            return self._refuse_token("jti replayed")
        self.jtis.add(claims["jti"])
        token = secrets.token_urlsafe(24)
        with self._state_lock:
            self.tokens[token] = time.monotonic() + self.token_ttl_s
        kid = jwt.get_unverified_header(assertion).get("kid")
        self.issued.append({"client_id": claims["iss"], "scope": form.get("scope"), "kid": kid})
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl_s,
                                  "scope": form.get("scope")})

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._state_lock:
            expires = self.tokens.get(token)
        if expires is None or expires <= time.monotonic():
            return web.json_response(outcome("login", "expired or unknown token"), status=401,
                                     headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    @staticmethod
    def _etag(resource: dict) -> str:
        return f'W/"{resource["meta"]["versionId"]}"'

    def _store(self, kind: str) -> dict:
        return {"Appointment": self.appointments, "Patient": self.patients, "Slot": self.slots,
                "Communication": self.communications}.get(kind, {})

    def _bundle(self, request: web.Request, path: str, matches: list[dict], includes) -> dict:
        count = min(int(request.query.get("_count", "20")), self.max_page)
        offset = int(request.query.get("_getpagesoffset", "0"))
        page = matches[offset:offset + count]
        entries = [{"fullUrl": f"{self.api_url}/{r['resourceType']}/{r['id']}", "resource": r,
                    "search": {"mode": "match"}} for r in page]
        seen = set()
        for resource in page:
            for extra in includes(resource):
                if extra["id"] not in seen:
                    seen.add(extra["id"])
                    entries.append({"fullUrl": f"{self.api_url}/{extra['resourceType']}/{extra['id']}",
                                    "resource": extra, "search": {"mode": "include"}})
        query = [(k, v) for k, v in request.query.items() if k != "_getpagesoffset"]
        links = [{"relation": "self", "url": f"{self.api_url}{path}?{urlencode(query + [('_getpagesoffset', offset)])}"}]
        if offset + count < len(matches):
            links.append({"relation": "next",
                          "url": f"{self.api_url}{path}?{urlencode(query + [('_getpagesoffset', offset + count)])}"})
        return {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "link": links,
                "entry": entries}

    @staticmethod
    def _in_range(value: str, bounds: list[str]) -> bool:
        for bound in bounds:
            op, moment = bound[:2], bound[2:]
            if op == "ge" and not value >= moment or op == "lt" and not value < moment:
                return False
            if op == "gt" and not value > moment or op == "le" and not value <= moment:
                return False
        return True

    async def search_appointments(self, request: web.Request) -> web.Response:
        if (refused := self._authorised(request)) is not None:
            return refused
        if self.fail_next_page and request.query.get("_getpagesoffset", "0") != "0":
            status, self.fail_next_page = self.fail_next_page, None
            return web.json_response(outcome("transient", "try again"), status=status)
        bounds = [_utc(b) for b in request.query.getall("date", [])]
        statuses = set((request.query.get("status") or "").split(",")) - {""}
        matches = sorted(
            (a for a in self.appointments.values()
             if (not statuses or a["status"] in statuses) and self._in_range(_utc(a["start"], op=False), bounds)),
            key=lambda a: (a["start"], a["id"]),
        )
        include = request.query.get("_include") == "Appointment:patient"

        def patients_of(appointment):
            if not include:
                return []
            refs = [p["actor"]["reference"] for p in appointment["participant"]
                    if p.get("actor", {}).get("reference", "").startswith("Patient/")]
            return [self.patients[r.split("/", 1)[1]] for r in refs if r.split("/", 1)[1] in self.patients]

        return web.json_response(self._bundle(request, "/Appointment", matches, patients_of),
                                 content_type=FHIR_JSON)

    async def search_slots(self, request: web.Request) -> web.Response:
        if (refused := self._authorised(request)) is not None:
            return refused
        bounds = [_utc(b) for b in request.query.getall("start", [])]
        schedule = request.query.get("schedule")
        status = request.query.get("status")
        matches = sorted(
            (s for s in self.slots.values()
             if (not schedule or s["schedule"]["reference"] == schedule) and (not status or s["status"] == status)
             and self._in_range(_utc(s["start"], op=False), bounds)),
            key=lambda s: (s["start"], s["id"]),
        )
        return web.json_response(self._bundle(request, "/Slot", matches, lambda _: []), content_type=FHIR_JSON)

    async def read(self, request: web.Request) -> web.Response:
        if (refused := self._authorised(request)) is not None:
            return refused
        resource = self._store(request.match_info["kind"]).get(request.match_info["id"])
        if resource is None:
            return web.json_response(outcome("not-found", "no such resource"), status=404)
        return web.json_response(resource, headers={"ETag": self._etag(resource)}, content_type=FHIR_JSON)

    async def update(self, request: web.Request) -> web.Response:
        if (refused := self._authorised(request)) is not None:
            return refused
        kind, fhir_id = request.match_info["kind"], request.match_info["id"]
        store = self._store(kind)
        body = await request.json()
        if (error := _validate(body)) or body.get("id") != fhir_id or body.get("resourceType") != kind:
            self.invalid.append({"path": request.path, "error": error or "id/resourceType mismatch"})
            return web.json_response(outcome("invalid", error or "id mismatch"), status=400)
        with self._state_lock:
            current = store.get(fhir_id)
            if current is None:
                return web.json_response(outcome("not-found", "no such resource"), status=404)
            if request.headers.get("If-Match") and request.headers["If-Match"] != self._etag(current):
                return web.json_response(outcome("conflict", "version mismatch"), status=412)
            if kind == "Slot" and current["status"] == "busy" and body.get("status") == "busy":
                return web.json_response(outcome("conflict", "slot already booked"), status=409)
            body["meta"] = {**body.get("meta", {}), "versionId": str(int(current["meta"]["versionId"]) + 1)}
            store[fhir_id] = body
        if kind == "Appointment":
            self.appointments[fhir_id] = body
        return web.json_response(body, headers={"ETag": self._etag(body)}, content_type=FHIR_JSON)

    async def create_communication(self, request: web.Request) -> web.Response:
        if (refused := self._authorised(request)) is not None:
            return refused
        body = await request.json()
        if error := _validate(body):
            self.invalid.append({"path": request.path, "error": error})
            return web.json_response(outcome("invalid", error), status=400)
        condition = request.headers.get("If-None-Exist", "")
        with self._state_lock:
            if condition.startswith("identifier="):
                system, _, value = condition[len("identifier="):].partition("|")
                for existing in self.communications.values():
                    if any(i.get("system") == system and i.get("value") == value for i in existing.get("identifier", [])):
                        return web.Response(status=200, headers={"Location": f"Communication/{existing['id']}/_history/1"})
            fhir_id = f"com-{next(self._ids)}"
            self.communications[fhir_id] = {**body, "id": fhir_id, "meta": {"versionId": "1"}}
        return web.Response(status=201, headers={"Location": f"Communication/{fhir_id}/_history/1"})


def _utc(value: str, op: bool = True) -> str:
    """A search bound ("ge2026-05-04T00:00:00+00:00") or an instant, in UTC "Z" form, so strings compare."""
    import datetime as dt

    prefix, moment = (value[:2], value[2:]) if op and value[:2] in ("ge", "gt", "le", "lt") else ("", value)
    parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return prefix + parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
