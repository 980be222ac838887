"""Jakarta Mail (JavaMail) 2.0.0, Debian 12's libjakarta-mail-java, sending through postguard.

Covers: STARTTLS to mx with ``mail.smtp.starttls.required`` and the development CA as the
only trust anchor, delivered over TLS 1.3 with the message bytes unchanged; AUTH PLAIN and
LOGIN on submission (STARTTLS) and submissions (the ``smtps`` transport, implicit TLS), and
XOAUTH2 with an :class:`OAuthIssuer` token as the password, each delivered with
``ESMTPSA``; a wrong password (``AuthenticationFailedException`` after 535 5.7.8); JavaMail
with AUTH configured but STARTTLS off on submission: the plaintext EHLO offers no AUTH, so
JavaMail sends none and MAIL gets 530 5.7.0; and the client's own checks: the JDK's
default trust store fails the chain (PKIX) on both TLS paths, and
``ssl.checkserveridentity`` refuses a host the certificate's dNSName entries do not name.
Every refusal leaves nothing delivered or queued.

How JavaMail runs: ``clients/javamail/Send.java`` through Java's single-file source
launcher (compiled in memory, no build step), as a child process of the test's event loop
(see ``harness``). Its whole job, password included, arrives on stdin as
``java.util.Properties`` text, never in argv; it reports on stdout in ``javamail-<key>:``
lines and writes ``mail.debug``'s dialogue to stderr (AUTH exchanges suppressed by
JavaMail). A run costs about a second of JVM start-up and compilation, so the cases are
few and the JVM runs with C1 only and the serial collector.

Why the tests connect to ``localhost`` and not 127.0.0.1: the development certificate
lists both (DNS and IP entries), but Jakarta Mail 2.0.0 on JDK 16+ cannot call the JDK's
``sun.security.util.HostnameChecker`` (not exported), and its fallback matches dNSName
entries only. :func:`test_javamail_name_check_refuses_a_host_given_as_an_ip_address`
pins that, which also proves the name check is on.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.accounts import (
    OAuthIssuer,
    TestAccount,
    assert_authenticated_delivery,
    start_auth_server,
)
from helpers.servers import InProcessServer, ServerInfo
from interop.conftest import missing
from interop.harness import (
    MarkedMessage,
    ToolResult,
    assert_delivered,
    assert_nothing_accepted,
    received_header,
    run_tool,
)

pytestmark = pytest.mark.interop

SEND_JAVA = Path(__file__).resolve().parent / "clients" / "javamail" / "Send.java"
# Debian 12: libjakarta-mail-java 2.0.0 (API and providers in one jar) and its dependency
# libjakarta-activation-java. The mail jar's manifest Class-Path names
# /usr/share/java/jakarta.activation.jar, which Debian does not ship, hence both here.
JAKARTA_MAIL_JAR = Path("/usr/share/java/jakarta-mail.jar")
JAKARTA_ACTIVATION_JAR = Path("/usr/share/java/jakarta-activation.jar")
# What must be inside the mail jar for session.getTransport("smtp"/"smtps") to work.
REQUIRED_JAR_ENTRIES = (
    "META-INF/javamail.default.providers",
    "com/sun/mail/smtp/SMTPTransport.class",
    "com/sun/mail/smtp/SMTPSSLTransport.class",
)
DEBIAN_JAVA = "openjdk-17-jre-headless"
DEBIAN_JAKARTA_MAIL = "libjakarta-mail-java"
# A short-lived client: C1 only and the serial collector cut start-up CPU by about 40 %
# on the 2-core VM; no hsperfdata file is left in /tmp; IPv4 first so "localhost" is
# 127.0.0.1, where the listeners are.
JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv6Addresses=false",
)
HOST = "localhost"  # see the module docstring
EHLO_NAME = "javamail.client.test"
OAUTH_USER = "alice@example.org"
EXIT_MESSAGING = 1  # Send.java: any MessagingException

AuthServer = tuple[InProcessServer, TestAccount]


@functools.cache
def _runtime_problem(java: str) -> str | None:
    """Why this ``java`` cannot run ``Send.java``, or None (asked once per session)."""
    # The source launcher compiles in memory with the jdk.compiler module.
    modules = subprocess.run(
        [java, "--list-modules"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    if "jdk.compiler@" not in modules:
        return f"{java} has no jdk.compiler module (the source launcher needs it)"
    for jar in (JAKARTA_MAIL_JAR, JAKARTA_ACTIVATION_JAR):
        if not jar.is_file():
            return f"{jar} is missing (Debian: apt-get install {DEBIAN_JAKARTA_MAIL})"
    with zipfile.ZipFile(JAKARTA_MAIL_JAR) as archive:
        names = set(archive.namelist())
    absent = [entry for entry in REQUIRED_JAR_ENTRIES if entry not in names]
    if absent:
        return f"{JAKARTA_MAIL_JAR} lacks the SMTP provider: no {', '.join(absent)}"
    return None


@dataclass(frozen=True)
class JavaMail:
    """How to run ``Send.java``."""

    java: str

    async def send(self, job: Mapping[str, str]) -> JavaMailRun:
        """Run one job; the properties text (password included) goes to stdin only."""
        classpath = f"{JAKARTA_MAIL_JAR}:{JAKARTA_ACTIVATION_JAR}"
        argv = (self.java, *JVM_OPTIONS, "-cp", classpath, str(SEND_JAVA))
        # SECURITY: what the job exists for: no secret is visible in the process list.
        assert "password" not in job or all(job["password"] not in arg for arg in argv)
        return JavaMailRun(await run_tool(*argv, stdin=java_properties(job)))


@dataclass(frozen=True)
class JavaMailRun:
    """A finished ``Send.java``: its exit status, report lines and debug dialogue."""

    tool: ToolResult

    @property
    def returncode(self) -> int:
        return self.tool.returncode

    @property
    def dialogue(self) -> str:
        """``mail.debug`` output: the SMTP lines and JavaMail's ``DEBUG SMTP:`` notes."""
        return self.tool.stderr.replace("\r\n", "\n")

    def report(self, key: str) -> str:
        """The value of ``javamail-<key>:`` lines on stdout, joined by newlines."""
        prefix = f"javamail-{key}: "
        return "\n".join(
            line.removeprefix(prefix)
            for line in self.tool.stdout.splitlines()
            if line.startswith(prefix)
        )

    def describe(self) -> str:
        return self.tool.describe()


def java_properties(values: Mapping[str, str]) -> bytes:
    """``values`` as ``java.util.Properties`` text, read back exactly by ``Properties.load``.

    Backslash escapes every character that ``load`` would otherwise interpret: the
    separators ``=`` and ``:``, comment starts, spaces (leading ones would be dropped),
    the backslash itself and line ends; other control characters become ``\\uXXXX``.
    """

    def escape(text: str) -> str:
        out = []
        for char in text:
            if char in "\\=:#! ":
                out.append("\\" + char)
            elif char in "\t\n\r\f":
                out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[char])
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                out.append(f"\\u{ord(char):04x}")
            else:
                out.append(char)
        return "".join(out)

    return "".join(f"{escape(k)}={escape(v)}\n" for k, v in values.items()).encode("utf-8")


def make_job(
    server: ServerInfo,
    listener: str,
    mode: str,
    sent: MarkedMessage,
    *,
    host: str = HOST,
    trust_dev_ca: bool = True,
    user: str | None = None,
    password: str | None = None,
    mechanism: str | None = None,
) -> dict[str, str]:
    """A ``Send.java`` job sending ``sent`` to ``server``'s ``listener``."""
    job = {
        "host": host,
        "port": str(server.ports[listener]),
        "mode": mode,
        "ehlo": EHLO_NAME,
        "from": sent.mail_from,
        "to": sent.rcpt_to,
        "message.base64": base64.b64encode(sent.as_bytes()).decode("ascii"),
    }
    if trust_dev_ca:
        job["ca"] = str(server.ca)
    if user is not None:
        assert password is not None and mechanism is not None
        job |= {"user": user, "password": password, "mechanisms": mechanism}
    return job


def assert_sent_unchanged(message: bytes, sent: MarkedMessage) -> None:
    """Our header fields and body arrive byte for byte after the server's own fields.

    Return-Path, Received and, after AUTH, Message-ID and Date (the message has neither)
    are the server's; JavaMail must add nothing, since ``Send.java`` never calls
    ``saveChanges()``.
    """
    assert message.endswith(sent.as_bytes()), message[:800]
    assert f"from {EHLO_NAME} ([127.0.0.1])" in received_header(message), message[:800]


@pytest.fixture
def javamail() -> JavaMail:
    """Java and Jakarta Mail, checked; skip loudly (fail under CI) when either is missing."""
    java = shutil.which("java")
    if java is None:
        missing(f"'java' is not on PATH (Debian: apt-get install {DEBIAN_JAVA})")
    assert java is not None
    # Blocking is fine: tool fixtures come before the server fixtures, nothing is served yet.
    problem = _runtime_problem(java)
    if problem is not None:
        missing(problem)
    return JavaMail(java)


@pytest.fixture
async def auth_server(
    server_factory: Callable[..., Awaitable[InProcessServer]], tmp_path: Path, issuer: OAuthIssuer
) -> AuthServer:
    return await start_auth_server(server_factory, tmp_path / "accounts", oauth=issuer)


async def test_javamail_starttls_required_to_mx_is_delivered(
    javamail: JavaMail, mail_server: InProcessServer
) -> None:
    sent = MarkedMessage.new("javamail")
    run = await javamail.send(make_job(mail_server, "mx", "starttls", sent))
    assert run.returncode == 0, run.describe()
    assert run.report("result") == "sent", run.describe()
    assert run.report("last-reply").startswith("250 2.0.0 OK: queued as "), run.describe()
    assert "\nSTARTTLS\n220 2.0.0 Ready to start TLS\n" in run.dialogue, run.describe()
    assert "DEBUG SMTP: useEhlo true, useAuth false" in run.dialogue, run.describe()
    message = assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")
    assert_sent_unchanged(message, sent)


@pytest.mark.parametrize(
    ("listener", "mode"), [("submission", "starttls"), ("submissions", "smtps")]
)
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_javamail_password_auth_is_delivered(
    javamail: JavaMail, auth_server: AuthServer, listener: str, mode: str, mechanism: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("javamail-auth")
    job = make_job(
        server, listener, mode, sent, user=alice.name, password=alice.password, mechanism=mechanism
    )
    run = await javamail.send(job)
    assert run.returncode == 0, run.describe()
    if mode == "smtps":
        connect = f'to host "{HOST}", port {server.ports[listener]}, isSSL true'
        assert connect in run.dialogue, run.describe()
    else:
        assert "\nSTARTTLS\n220 2.0.0 Ready to start TLS\n" in run.dialogue, run.describe()
    # The AUTH exchange itself is "trace suppressed" by JavaMail; these are its verdicts.
    assert f"DEBUG SMTP: Using mechanism {mechanism}\n" in run.dialogue, run.describe()
    assert f"DEBUG SMTP: AUTH {mechanism} succeeded\n" in run.dialogue, run.describe()
    assert run.report("last-reply").startswith("250 2.0.0 OK: queued as "), run.describe()
    message = assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)
    assert_sent_unchanged(message, sent)


async def test_javamail_xoauth2_with_a_bearer_token_is_delivered(
    javamail: JavaMail, auth_server: AuthServer, issuer: OAuthIssuer
) -> None:
    server, _ = auth_server
    sent = MarkedMessage.new("javamail-oauth")
    token = issuer.token(OAUTH_USER)
    job = make_job(
        server, "submission", "starttls", sent, user=OAUTH_USER, password=token, mechanism="XOAUTH2"
    )
    run = await javamail.send(job)
    assert run.returncode == 0, run.describe()
    assert re.search(r"\n250[ -]AUTH [^\n]*\bXOAUTH2\b", run.dialogue), run.describe()
    assert "DEBUG SMTP: Using mechanism XOAUTH2\n" in run.dialogue, run.describe()
    assert "DEBUG SMTP: AUTH XOAUTH2 succeeded\n" in run.dialogue, run.describe()
    assert token not in run.tool.transcript, "the access token reached the transcript"
    message = assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)
    assert_sent_unchanged(message, sent)


async def test_javamail_with_a_wrong_password_is_535(
    javamail: JavaMail, auth_server: AuthServer
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("javamail-auth")
    job = make_job(
        server,
        "submission",
        "starttls",
        sent,
        user=alice.name,
        password="not-the-password",
        mechanism="PLAIN",
    )
    run = await javamail.send(job)
    assert run.returncode == EXIT_MESSAGING, run.describe()
    assert run.report("exception") == "jakarta.mail.AuthenticationFailedException", run.describe()
    assert run.report("return-code") == "535", run.describe()
    refused = "535 5.7.8 Authentication credentials invalid"
    assert run.report("last-reply") == refused, run.describe()
    assert "DEBUG SMTP: AUTH PLAIN failed\n" in run.dialogue, run.describe()
    assert "MAIL FROM" not in run.dialogue, run.describe()
    assert_nothing_accepted(server)


async def test_javamail_auth_without_starttls_on_submission_is_530_at_mail(
    javamail: JavaMail, auth_server: AuthServer
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("javamail-plain")
    job = make_job(
        server,
        "submission",
        "plain",
        sent,
        user=alice.name,
        password=alice.password,
        mechanism="PLAIN",
    )
    run = await javamail.send(job)
    assert run.returncode == EXIT_MESSAGING, run.describe()
    # JavaMail was told to authenticate...
    assert "DEBUG SMTP: useEhlo true, useAuth true" in run.dialogue, run.describe()
    # ...but the plaintext EHLO offers STARTTLS and no AUTH (RFC 4954 §4 lets a server
    # withhold it), and JavaMail sends AUTH only when offered: it goes straight to MAIL.
    ehlo = run.dialogue.partition("\nEHLO ")[2].partition("\n250 ")
    assert ehlo[1] and ehlo[2].startswith("STARTTLS\n"), run.describe()
    assert "AUTH" not in ehlo[0], run.describe()
    assert "DEBUG SMTP: Using mechanism" not in run.dialogue, run.describe()
    refused = "530 5.7.0 Must issue a STARTTLS command first"
    assert f"\nMAIL FROM:<{sent.mail_from}>\n{refused}\n" in run.dialogue, run.describe()
    assert run.report("exception") == "com.sun.mail.smtp.SMTPSendFailedException", run.describe()
    assert run.report("return-code") == "530", run.describe()
    assert "\nDATA\n" not in run.dialogue, run.describe()
    assert_nothing_accepted(server)


@pytest.mark.parametrize(
    ("listener", "mode", "failure"),
    [
        ("mx", "starttls", "Could not convert socket to TLS"),
        ("submissions", "smtps", "Could not connect to SMTP host: "),
    ],
    ids=["mx-starttls", "submissions-smtps"],
)
async def test_javamail_with_the_jdk_trust_store_refuses_the_development_ca(
    javamail: JavaMail, mail_server: InProcessServer, listener: str, mode: str, failure: str
) -> None:
    sent = MarkedMessage.new("javamail")
    run = await javamail.send(make_job(mail_server, listener, mode, sent, trust_dev_ca=False))
    assert run.returncode == EXIT_MESSAGING, run.describe()
    assert run.report("exception") == "jakarta.mail.MessagingException", run.describe()
    assert run.report("message").startswith(failure), run.describe()
    # Later JDK 17 updates (17.0.21) put the alert first: "...: (certificate_unknown) PKIX ..."
    cause = run.report("cause")
    assert cause.startswith("javax.net.ssl.SSLHandshakeException: "), run.describe()
    assert "PKIX path building failed" in cause, run.describe()
    assert "MAIL FROM" not in run.dialogue, run.describe()
    assert_nothing_accepted(mail_server)


async def test_javamail_name_check_refuses_a_host_given_as_an_ip_address(
    javamail: JavaMail, mail_server: InProcessServer
) -> None:
    sent = MarkedMessage.new("javamail")
    run = await javamail.send(make_job(mail_server, "mx", "starttls", sent, host="127.0.0.1"))
    assert run.returncode == EXIT_MESSAGING, run.describe()
    assert run.report("message") == "Could not convert socket to TLS", run.describe()
    name_check = "java.io.IOException: Can't verify identity of server: 127.0.0.1"
    assert run.report("cause") == name_check, run.describe()
    assert "MAIL FROM" not in run.dialogue, run.describe()
    assert_nothing_accepted(mail_server)
