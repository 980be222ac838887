/*
 * Send one message with Jakarta Mail (JavaMail) 2.x, for tests/interop/test_javamail.py.
 *
 * Run with Java's single-file source launcher, no build step:
 *
 *     java -cp jakarta-mail.jar:jakarta-activation.jar Send.java < job.properties
 *
 * The whole job arrives on standard input as java.util.Properties text (UTF-8), so no
 * secret is ever on the command line:
 *
 *     host, port          where to connect (the name is also what the certificate must cover)
 *     mode                starttls  STARTTLS, required (mail.smtp.starttls.required=true)
 *                         smtps     implicit TLS (the "smtps" transport)
 *                         plain     no TLS at all (mail.smtp.starttls.enable=false)
 *     ca                  PEM file of the only trust anchor (the development CA); when
 *                         absent, the JDK's default trust store (cacerts) is used
 *     ehlo                the name sent in EHLO (mail.smtp.localhost)
 *     user, password      optional; when set, mail.smtp.auth=true
 *     mechanisms          mail.smtp.auth.mechanisms, e.g. "PLAIN", "LOGIN", "XOAUTH2"
 *                         (for XOAUTH2 the password is the access token)
 *     from, to            the envelope (mail.smtp.from, one RCPT TO)
 *     message.base64      the message, sent as given: new MimeMessage(session, stream),
 *                         and never saveChanges(), so no header is added or rewritten
 *
 * Server identity is always checked (mail.<protocol>.ssl.checkserveridentity=true) on top
 * of the trust manager's chain check. Note that Jakarta Mail 2.0.0 on JDK 16+ cannot reach
 * the JDK's own HostnameChecker (sun.security.util is not exported), so its fallback
 * compares the host with the certificate's dNSName entries (then the CN) and never with an
 * iPAddress entry: connect by a name the certificate lists.
 *
 * mail.debug writes the SMTP dialogue to stderr, with AUTH exchanges replaced by
 * "AUTH <mechanism> command trace suppressed" (mail.debug.auth stays false, its default),
 * so neither password nor token reaches the transcript.
 *
 * Output on stdout, one "javamail-<key>: value" line each, for the test to parse:
 * "result" (sent | failed | bad-job), "last-reply" (the server's last reply, if any),
 * "exception" (class), "return-code" (of an SMTP*FailedException; for an
 * AuthenticationFailedException, the transport's last code), "message", and one "cause"
 * line per nested exception.
 *
 * Exit status: 0 sent, 1 any MessagingException, 2 a malformed job.
 */

import com.sun.mail.smtp.SMTPAddressFailedException;
import com.sun.mail.smtp.SMTPSendFailedException;
import com.sun.mail.smtp.SMTPSenderFailedException;
import com.sun.mail.smtp.SMTPTransport;
import jakarta.mail.Address;
import jakarta.mail.AuthenticationFailedException;
import jakarta.mail.MessagingException;
import jakarta.mail.Session;
import jakarta.mail.internet.InternetAddress;
import jakarta.mail.internet.MimeMessage;
import java.io.ByteArrayInputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.Base64;
import java.util.Collection;
import java.util.Properties;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

public class Send {
    static final int EXIT_SENT = 0;
    static final int EXIT_MESSAGING = 1;
    static final int EXIT_BAD_JOB = 2;
    // Bounded waits: the test kills us after 30 s anyway, this reports the cause first.
    static final String TIMEOUT_MS = "20000";

    // The result lines go to the real stdout; everything else (JavaMail's debug output,
    // which starts at Session creation) goes to stderr, so stdout stays parseable.
    static final PrintStream OUT = System.out;

    public static void main(String[] args) throws IOException {
        System.setOut(System.err);
        Properties job = new Properties();
        job.load(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String mode = required(job, "mode");
        if (!mode.equals("starttls") && !mode.equals("smtps") && !mode.equals("plain")) {
            badJob("mode must be starttls, smtps or plain, not " + mode);
        }
        String protocol = mode.equals("smtps") ? "smtps" : "smtp";
        String p = "mail." + protocol + ".";
        String host = required(job, "host");
        int port = 0;
        try {
            port = Integer.parseInt(required(job, "port"));
        } catch (NumberFormatException e) {
            badJob("port is not a number");
        }

        Properties props = new Properties();
        props.setProperty("mail.debug", "true");
        props.setProperty("mail.transport.protocol", protocol);
        props.setProperty(p + "host", host);
        props.setProperty(p + "port", Integer.toString(port));
        props.setProperty(p + "localhost", job.getProperty("ehlo", "javamail.client.test"));
        props.setProperty(p + "from", required(job, "from"));
        props.setProperty(p + "connectiontimeout", TIMEOUT_MS);
        props.setProperty(p + "timeout", TIMEOUT_MS);
        props.setProperty(p + "writetimeout", TIMEOUT_MS);
        if (mode.equals("starttls")) {
            props.setProperty(p + "starttls.enable", "true");
            // Without this, JavaMail carries on in plaintext when STARTTLS is not offered.
            props.setProperty(p + "starttls.required", "true");
        } else if (mode.equals("plain")) {
            props.setProperty(p + "starttls.enable", "false");
        }
        if (!mode.equals("plain")) {
            props.setProperty(p + "ssl.checkserveridentity", "true");
            String ca = job.getProperty("ca");
            if (ca != null) {
                try {
                    // Properties.put, not setProperty: the value is an object, not a string.
                    props.put(p + "ssl.socketFactory", socketFactoryTrusting(ca));
                } catch (GeneralSecurityException | IOException e) {
                    badJob("cannot load CA " + ca + ": " + e);
                }
            }
        }
        String user = job.getProperty("user");
        String password = job.getProperty("password");
        if (user != null) {
            props.setProperty(p + "auth", "true");
            String mechanisms = job.getProperty("mechanisms");
            if (mechanisms != null) {
                // XOAUTH2 is off by default in JavaMail; naming it here is what enables it.
                props.setProperty(p + "auth.mechanisms", mechanisms);
            }
        }
        byte[] raw = Base64.getDecoder().decode(required(job, "message.base64"));
        String rcpt = required(job, "to");

        Session session = Session.getInstance(props);
        SMTPTransport transport = null;
        try {
            // Parsed from the bytes and never saveChanges()d: writeTo sends them unchanged.
            MimeMessage message = new MimeMessage(session, new ByteArrayInputStream(raw));
            Address[] to = {new InternetAddress(rcpt)};
            transport = (SMTPTransport) session.getTransport(protocol);
            transport.connect(host, port, user, password);
            transport.sendMessage(message, to);
            OUT.println("javamail-result: sent");
            OUT.println("javamail-last-reply: " + lastReply(transport));
            closeQuietly(transport);
            System.exit(EXIT_SENT);
        } catch (MessagingException e) {
            OUT.println("javamail-result: failed");
            OUT.println("javamail-exception: " + e.getClass().getName());
            Integer code = returnCode(e);
            if (e instanceof AuthenticationFailedException && transport != null) {
                // It carries no code of its own; the refusal is the transport's last reply.
                code = transport.getLastReturnCode();
            }
            if (code != null) {
                OUT.println("javamail-return-code: " + code);
            }
            if (transport != null && !lastReply(transport).isEmpty()) {
                OUT.println("javamail-last-reply: " + lastReply(transport));
            }
            OUT.println("javamail-message: " + oneLine(e.getMessage()));
            for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
                OUT.println("javamail-cause: " + cause.getClass().getName() + ": "
                        + oneLine(cause.getMessage()));
            }
            closeQuietly(transport);
            System.exit(EXIT_MESSAGING);
        }
    }

    /** An SSLSocketFactory whose only trust anchors are the certificates in a PEM file. */
    static SSLSocketFactory socketFactoryTrusting(String pemPath)
            throws GeneralSecurityException, IOException {
        KeyStore anchors = KeyStore.getInstance(KeyStore.getDefaultType());
        anchors.load(null, null);
        try (InputStream in = new FileInputStream(pemPath)) {
            Collection<? extends Certificate> certs =
                    CertificateFactory.getInstance("X.509").generateCertificates(in);
            if (certs.isEmpty()) {
                throw new GeneralSecurityException("no certificate in " + pemPath);
            }
            int n = 0;
            for (Certificate cert : certs) {
                anchors.setCertificateEntry("anchor-" + n++, cert);
            }
        }
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(anchors);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, tmf.getTrustManagers(), null);
        return context.getSocketFactory();
    }

    static Integer returnCode(MessagingException e) {
        // Each has its own getReturnCode(); none shares a common interface.
        if (e instanceof SMTPSendFailedException) {
            return ((SMTPSendFailedException) e).getReturnCode();
        }
        if (e instanceof SMTPSenderFailedException) {
            return ((SMTPSenderFailedException) e).getReturnCode();
        }
        if (e instanceof SMTPAddressFailedException) {
            return ((SMTPAddressFailedException) e).getReturnCode();
        }
        return null;
    }

    static String lastReply(SMTPTransport transport) {
        String reply = transport.getLastServerResponse();
        return reply == null ? "" : oneLine(reply);
    }

    static String oneLine(String text) {
        return text == null ? "" : text.strip().replace("\r", "").replace("\n", " | ");
    }

    static String required(Properties job, String key) {
        String value = job.getProperty(key);
        if (value == null) {
            badJob("missing key " + key);
        }
        return value;
    }

    static void badJob(String why) {
        OUT.println("javamail-result: bad-job");
        OUT.println("javamail-message: " + why);
        System.exit(EXIT_BAD_JOB);
    }

    static void closeQuietly(SMTPTransport transport) {
        if (transport == null) {
            return;
        }
        try {
            transport.close();
        } catch (MessagingException ignored) {
            // Already failing; the first error is the one reported.
        }
    }
}
