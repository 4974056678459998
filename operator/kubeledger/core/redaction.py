"""Redaction of secret-looking values in a projection, before it is kept, diffed or shipped.

A value is judged secret by the name it goes under, never by its content:

- an env var's ``value`` when the var's name looks secret, in every ``containers``,
  ``initContainers`` and ``ephemeralContainers`` list anywhere in the object
  (``valueFrom`` only points at a Secret and stays);
- in ``command`` and ``args``: ``--flag=value`` and ``NAME=value`` (also inside a script
  such as ``sh -c "..."``), ``--flag value`` inside a script, and the item after a bare
  ``--flag`` item, when the flag's or the variable's name looks secret;
- an annotation's value when its key looks secret, in every ``metadata`` of the object
  (the object's own and its pod template's).

A secret value becomes ``redacted:sha256:<first 32 hex of HMAC-SHA256(salt, value)>``: the
same value under the same salt always gives the same marker, so a change stays visible in
a diff while the value does not; the salt keeps short values from being guessed by hashing
candidates. Redacting is idempotent: a marker is left as it is.

Neighbours: :mod:`kubeledger.core.projection` produces what is redacted here, and drops the
``last-applied-configuration`` annotation outright; a configuration module builds the
:class:`RedactionPolicy` from user settings.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

#: Secret-looking names, matched case-insensitively against the name as written and with
#: camelCase humps split by ``_`` (``apiKey`` is also read as ``api_Key``), so that the
#: word boundaries below see the words of ``apiKey``, ``API_KEY`` and ``api-key`` alike.
#: Deliberately broad: a needless redaction only hides a harmless value (the change
#: itself stays visible); a missed one leaks a secret.
DEFAULT_NAME_PATTERNS: tuple[str, ...] = (
    r"PASS(?:WORD|WD|PHRASE)",  # DB_PASSWORD, MYSQL_ROOT_PASSWD, SSH_PASSPHRASE
    # Short words only as whole words: DB_PASS, MYSQL_PWD, REDIS_AUTH, SENTRY_DSN,
    # but not BYPASS_CACHE or OAUTH_CLIENT_ID.
    r"(?<![A-Z0-9])(?:PASS|PWD|AUTH|AUTHORIZATION|DSN)(?![A-Z0-9])",
    r"SECRET",  # CLIENT_SECRET, AWS_SECRET_ACCESS_KEY
    r"TOKEN",  # GITHUB_TOKEN, accessToken
    r"CREDENTIAL",  # DB_CREDENTIALS
    r"CONNECTION_?STRING",  # Azure connection strings carry account keys
    # A word ending in KEY: API_KEY, PRIVATEKEY, apiKey, tls.key, --secret-key; but not
    # KEYCLOAK_URL or KEYSPACE. Accepted false positives: MONKEY, CACHE_KEY.
    r"KEYS?(?![A-Z])",
)
# Not in the defaults, by decision: CERT. A certificate is public; its private key is
# caught by KEY (TLS_KEY, tls.key), its password by PASSWORD.

MARKER_PREFIX = "redacted:sha256:"
_MARKER = re.compile(re.escape(MARKER_PREFIX) + r"[0-9a-f]{32}")

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

# A value in a command line: quoted parts and other non-blank characters, up to a blank.
_VALUE = r"""(?:"[^"]*"|'[^']*'|\S)+"""
# ``--flag=value``, ``-flag=value`` and ``NAME=value``, also inside a script; the
# look-behind keeps the key whole (``--db-password``, not ``password``).
_ASSIGNMENT = re.compile(rf"(?<![\w.-])(?P<key>-{{0,2}}[A-Za-z_][\w.-]*)=(?P<value>{_VALUE})")
# ``--flag value`` inside a script; a value never starts with ``-`` (that is the next flag).
_SPACED_FLAG = re.compile(rf"(?<![\w.-])(?P<key>--?[A-Za-z][\w.-]*)[ \t]+(?P<value>(?!-){_VALUE})")
# An argument that is a flag alone: its value is the next argument.
_BARE_FLAG = re.compile(r"--?[A-Za-z][\w.-]*")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Env var names and annotation keys repeat on every event of an object: remember verdicts.
# Bounded, because names come from whoever writes the objects.
_REMEMBERED_NAMES = 4096


class RedactionPolicy(BaseModel):
    """What counts as a secret-looking name (of an env var, a flag, an annotation key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Regular expressions (Python syntax), searched case-insensitively; see
    #: :data:`DEFAULT_NAME_PATTERNS`. An empty tuple redacts nothing.
    name_patterns: tuple[str, ...] = DEFAULT_NAME_PATTERNS

    @field_validator("name_patterns")
    @classmethod
    def _must_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        try:
            _compile_alternatives(patterns)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from error
        return patterns

    def name_regex(self) -> re.Pattern[str]:
        """All name patterns as one compiled regular expression (compile once, reuse)."""
        return _compile_alternatives(self.name_patterns)


DEFAULT_POLICY = RedactionPolicy()


class Redactor:
    """Replaces secret-looking values in projections by salted-hash markers.

    Build one at start-up and reuse it: the patterns are compiled here, once.
    """

    def __init__(self, salt: bytes, policy: RedactionPolicy = DEFAULT_POLICY) -> None:
        if not salt:
            # Without a salt a marker is a plain SHA-256, and short secrets can be guessed.
            raise ValueError("a non-empty redaction salt is required")
        self._salt = salt
        self._fingerprint_key = hmac.new(salt, b"kubeledger projection fingerprint v1",
                                         hashlib.sha256).digest()
        self._secret_name = policy.name_regex()
        self._name_verdicts = functools.lru_cache(maxsize=_REMEMBERED_NAMES)(self._judge_name)
        self._container_fields: Mapping[str, Callable[[Any], Any]] = {
            "env": self._env,
            "command": self._argv,
            "args": self._argv,
        }

    def redact(self, projection: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of ``projection``; the argument is never changed.

        Only the containers and mappings on the way to a redacted value are copied; every
        other part is shared with the argument.
        """
        return dict(self._node(projection))

    def fingerprint(self, unredacted: bytes) -> bytes:
        """A keyed digest of an unredacted projection, to tell an unchanged object at once.

        Held in memory only, never written: keyed with the salt, like the markers, so it
        tells nothing about the values in it. Equal fingerprints mean equal projections,
        hence equal redactions, so the redaction need not run again (it is most of the
        cost of an event that changes nothing).
        """
        return hashlib.blake2b(unredacted, key=self._fingerprint_key, digest_size=16).digest()

    def marker(self, value: str) -> str:
        """The marker that stands for ``value``; a marker stands for itself."""
        if _MARKER.fullmatch(value):
            return value
        digest = hmac.new(self._salt, value.encode(), hashlib.sha256).hexdigest()
        return f"{MARKER_PREFIX}{digest[:32]}"

    def is_secret_name(self, name: str) -> bool:
        """Whether a value under this name (env var, flag, annotation key) is redacted."""
        return self._name_verdicts(name)

    def _judge_name(self, name: str) -> bool:
        search = self._secret_name.search
        return bool(search(name) or search(_CAMEL_HUMP.sub("_", name)))

    # Each rewriting step below returns its argument itself when it has nothing to
    # redact, so that untouched parts are shared instead of copied.

    def _node(self, node: Any) -> Any:
        if isinstance(node, Mapping):
            return _rewrite_fields(node, self._rewriter)
        if isinstance(node, list):
            return _rewrite_items(node, self._node)
        return node

    def _rewriter(self, key: str) -> Callable[[Any], Any]:
        if key in _CONTAINER_LISTS:
            return self._containers
        if key == "metadata":
            return self._metadata
        return self._node

    def _containers(self, containers: Any) -> Any:
        if not isinstance(containers, list):
            return containers
        return _rewrite_items(containers, self._container)

    def _container(self, container: Any) -> Any:
        if not isinstance(container, Mapping):
            return container
        return _rewrite_fields(container, self._container_fields.get)

    def _env(self, env: Any) -> Any:
        if not isinstance(env, list):
            return env
        return _rewrite_items(env, self._env_var)

    def _env_var(self, var: Any) -> Any:
        if not (isinstance(var, Mapping) and isinstance(var.get("value"), str)):
            return var
        if not self.is_secret_name(str(var.get("name", ""))):
            return var
        return {**var, "value": self.marker(var["value"])}

    def _metadata(self, metadata: Any) -> Any:
        if not isinstance(metadata, Mapping):
            return metadata
        return _rewrite_fields(metadata, {"annotations": self._annotations}.get)

    def _annotations(self, annotations: Any) -> Any:
        if not isinstance(annotations, Mapping):
            return annotations
        secret_keys = [
            key
            for key, value in annotations.items()
            if isinstance(value, str) and self.is_secret_name(key)
        ]
        if not secret_keys:
            return annotations
        return {**annotations, **{key: self.marker(annotations[key]) for key in secret_keys}}

    def _argv(self, argv: Any) -> Any:
        if not isinstance(argv, list):
            return argv
        redacted: list[Any] = []
        value_follows = False  # the previous item was a bare secret-looking flag
        for item in argv:
            if not isinstance(item, str):
                redacted.append(item)
                value_follows = False
                continue
            if value_follows and not item.startswith("-"):
                redacted.append(self.marker(item))
            else:
                redacted.append(self._command_line(item))
            value_follows = bool(_BARE_FLAG.fullmatch(item)) and self._is_secret_key(item)
        return redacted if redacted != argv else argv

    def _command_line(self, text: str) -> str:
        # Assignments first, so that ``--x NAME=value`` cannot pass NAME=value off as the
        # value of --x; the markers the first pass leaves are no secrets to the second.
        return self._redact_values(_SPACED_FLAG, self._redact_values(_ASSIGNMENT, text))

    def _redact_values(self, pattern: re.Pattern[str], text: str) -> str:
        """``text`` with the value of each secret-keyed ``pattern`` match replaced."""
        parts: list[str] = []
        kept_from = search_from = 0
        while match := pattern.search(text, search_from):
            if self._is_secret_key(match["key"]):
                parts += (text[kept_from : match.start("value")], self.marker(match["value"]))
                kept_from = search_from = match.end()
            else:
                # Look inside the value too: ``--set=db.password=x`` hides a secret there.
                search_from = match.start("value")
        return "".join(parts) + text[kept_from:] if parts else text

    def _is_secret_key(self, key: str) -> bool:
        return self.is_secret_name(key.lstrip("-"))


def _compile_alternatives(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.IGNORECASE)


def _rewrite_fields(
    mapping: Mapping[str, Any], rewriter_for: Callable[[str], Callable[[Any], Any] | None]
) -> Mapping[str, Any]:
    """``mapping`` with each field passed through its rewriter (if it has one).

    ``mapping`` itself when no field changed.
    """
    changed = {}
    for key, value in mapping.items():
        rewrite = rewriter_for(key)
        if rewrite is not None and (rewritten := rewrite(value)) is not value:
            changed[key] = rewritten
    return {**mapping, **changed} if changed else mapping


def _rewrite_items(items: list[Any], rewrite: Callable[[Any], Any]) -> list[Any]:
    """``items`` each passed through ``rewrite``; the list itself if no item changed."""
    rewritten = [rewrite(item) for item in items]
    if all(new is old for new, old in zip(rewritten, items, strict=True)):
        return items
    return rewritten
