<?php
/*
 * Send one message with PHPMailer, as postguard's interop tests ask (tests/interop/test_phpmailer.py).
 *
 * The whole job arrives as one JSON object on standard input, so no secret is ever on the
 * command line:
 *
 *   autoload     path of PHPMailer's autoloader (Debian: /usr/share/php/libphp-phpmailer/autoload.php)
 *   host, port   where to connect
 *   secure       "tls" (STARTTLS), "ssl" (implicit TLS) or "" (plaintext: SMTPAutoTLS is off too)
 *   cafile       the only trust anchor, or null to verify against the system's CAs
 *   peer_name    the name the server certificate must cover
 *   helo         the EHLO name
 *   auth         null, {"type": "PLAIN"|"LOGIN"|"CRAM-MD5", "user", "password"}
 *                or {"type": "XOAUTH2", "user", "token"}
 *   mail_from, rcpt_to, subject, body
 *   timeout      seconds, per SMTP step
 *
 * PHPMailer's dialogue (client commands and server replies, with credentials hidden) and
 * its connection messages go to standard error; standard output carries one JSON object, {"ok": true, "message_id": ...} or
 * {"ok": false, "error": ErrorInfo}. The exit status is 0 on success, 1 when PHPMailer
 * failed, 2 when the job itself is unusable.
 *
 * Must not: weaken verification (verify_peer, verify_peer_name and no self-signed
 * certificates, whatever the job says), or fall back to another AUTH mechanism unnoticed
 * (PHPMailer silently picks another one when the requested one is not offered, so the
 * tests look for the mechanism's command in the transcript).
 */

declare(strict_types=1);

use PHPMailer\PHPMailer\Exception as MailerException;
use PHPMailer\PHPMailer\OAuthTokenProvider;
use PHPMailer\PHPMailer\PHPMailer;
use PHPMailer\PHPMailer\SMTP;

function finish(array $result, int $status): void
{
    fwrite(STDOUT, json_encode($result, JSON_UNESCAPED_SLASHES) . "\n");
    exit($status);
}

$job = json_decode((string) stream_get_contents(STDIN), true);
if (!is_array($job) || !isset($job['autoload'], $job['host'], $job['port'], $job['mail_from'])) {
    finish(['ok' => false, 'error' => 'job: expected a JSON object with autoload, host, port, mail_from'], 2);
}
require $job['autoload'];

/**
 * XOAUTH2's initial response, as PHPMailer 6.6+ asks an OAuthTokenProvider for it: the
 * base64 of "user=" USER ^A "auth=Bearer " TOKEN ^A ^A (Google's XOAUTH2 protocol).
 * Stands in for league/oauth2-client, which would fetch the token from an identity provider.
 */
final class StaticBearerToken implements OAuthTokenProvider
{
    private string $user;
    private string $token;

    public function __construct(string $user, string $token)
    {
        $this->user = $user;
        $this->token = $token;
    }

    public function getOauth64()
    {
        return base64_encode("user={$this->user}\001auth=Bearer {$this->token}\001\001");
    }
}

// The default validator (PHP's FILTER_VALIDATE_EMAIL) refuses a dotless domain such as
// test@localhost; HTML5's pattern, one of PHPMailer's own choices, takes it.
PHPMailer::$validator = 'html5';

$mail = new PHPMailer(true);
$mail->isSMTP();
// DEBUG_CONNECTION (3) is DEBUG_SERVER (2, the dialogue) plus the connection's own
// messages: without them an implicit-TLS handshake failure reads only "Failed to connect
// to server:  (0)", and the OpenSSL reason (certificate verify failed...) is lost.
$mail->SMTPDebug = SMTP::DEBUG_CONNECTION;
$mail->Debugoutput = static function (string $line, int $level): void {
    // PHPMailer hides the PLAIN, LOGIN and CRAM-MD5 responses itself, but prints XOAUTH2's
    // initial response (the bearer token) in full; hide it the same way.
    $line = preg_replace('/^(CLIENT -> SERVER: AUTH XOAUTH2) \S+/', '$1 [credentials hidden]', $line);
    fwrite(STDERR, rtrim($line, "\r\n") . "\n");
};
$mail->Host = (string) $job['host'];
$mail->Port = (int) $job['port'];
$mail->Timeout = (int) ($job['timeout'] ?? 20);
$mail->Helo = (string) ($job['helo'] ?? 'phpmailer.client.test');
$mail->Hostname = $mail->Helo;  // the Message-ID's domain

$secure = (string) ($job['secure'] ?? 'tls');
if (!in_array($secure, [PHPMailer::ENCRYPTION_STARTTLS, PHPMailer::ENCRYPTION_SMTPS, ''], true)) {
    finish(['ok' => false, 'error' => "job: secure must be tls, ssl or empty, not {$secure}"], 2);
}
$mail->SMTPSecure = $secure;
// Plaintext means plaintext: by default PHPMailer upgrades whenever STARTTLS is offered.
$mail->SMTPAutoTLS = $secure !== '';

$ssl = [
    'verify_peer' => true,
    'verify_peer_name' => true,
    'allow_self_signed' => false,
    'peer_name' => (string) ($job['peer_name'] ?? 'localhost'),
];
if (isset($job['cafile'])) {
    $ssl['cafile'] = (string) $job['cafile'];
}
$mail->SMTPOptions = ['ssl' => $ssl];

$auth = $job['auth'] ?? null;
if (is_array($auth)) {
    $mail->SMTPAuth = true;
    $mail->AuthType = (string) $auth['type'];
    $mail->Username = (string) $auth['user'];
    if ($mail->AuthType === 'XOAUTH2') {
        $mail->setOAuth(new StaticBearerToken((string) $auth['user'], (string) $auth['token']));
    } else {
        $mail->Password = (string) $auth['password'];
    }
}

try {
    $mail->Sender = (string) $job['mail_from'];  // MAIL FROM
    $mail->setFrom((string) $job['mail_from'], '', false);
    $mail->addAddress((string) $job['rcpt_to']);  // RCPT TO
    $mail->Subject = (string) ($job['subject'] ?? '');
    $mail->Body = (string) ($job['body'] ?? '');
    $mail->send();
} catch (MailerException $exc) {
    finish(['ok' => false, 'error' => $mail->ErrorInfo], 1);
}
finish(['ok' => true, 'message_id' => $mail->getLastMessageID()], 0);
