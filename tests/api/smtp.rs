//! An SMTP capture server on loopback: real `lettre` SMTP talks to it over TCP, and tests
//! read what arrived. It can refuse a number of messages first, to exercise retries.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub from: String,
    pub to: Vec<String>,
    pub raw: String,
}

impl CapturedMail {
    /// The parsed message (headers, text and HTML parts).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(self.raw.as_bytes()).expect("a MIME message")
    }
}

#[derive(Clone)]
pub struct SmtpCapture {
    pub port: u16,
    mails: Arc<Mutex<Vec<CapturedMail>>>,
    refuse: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
}

impl SmtpCapture {
    pub async fn start() -> SmtpCapture {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let capture = SmtpCapture {
            port,
            mails: Arc::new(Mutex::new(Vec::new())),
            refuse: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(AtomicUsize::new(0)),
        };
        let server = capture.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.session(socket).await });
            }
        });
        capture
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Refuse the next `n` messages with a temporary failure (451).
    pub fn refuse_next(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Take the next `n` messages and then hang up before confirming them: the exchange is
    /// cut after the receiver has the message, as when a sender crashes or the link drops.
    pub fn cut_after_data(&self, n: usize) {
        self.cut.store(n, Ordering::SeqCst);
    }

    pub fn mails(&self) -> Vec<CapturedMail> {
        self.mails.lock().expect("lock").clone()
    }

    /// Waits up to `secs` for at least `n` messages.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<CapturedMail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let mails = self.mails();
            if mails.len() >= n || tokio::time::Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn session(&self, socket: tokio::net::TcpStream) {
        // Replies are small writes; without NODELAY, Nagle and delayed ACKs add ~40 ms each.
        let _ = socket.set_nodelay(true);
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        let mut from = String::new();
        let mut to = Vec::new();
        if write.write_all(b"220 capture ESMTP\r\n").await.is_err() {
            return;
        }
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-capture\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("HELO") {
                b"250 capture\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                let refused =
                    self.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if refused {
                    b"451 4.3.0 try again later\r\n"
                } else {
                    from = line[10..].trim().trim_matches(['<', '>']).to_owned();
                    to.clear();
                    b"250 OK\r\n"
                }
            } else if upper.starts_with("RCPT TO:") {
                to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                b"250 OK\r\n"
            } else if upper.starts_with("DATA") {
                if write.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                let mut raw = String::new();
                loop {
                    let mut data = String::new();
                    if lines.read_line(&mut data).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if data == ".\r\n" {
                        break;
                    }
                    // Undo SMTP dot-stuffing.
                    raw.push_str(data.strip_prefix('.').filter(|_| data.starts_with("..")).unwrap_or(&data));
                }
                self.mails.lock().expect("lock").push(CapturedMail { from: from.clone(), to: to.clone(), raw });
                if self.cut.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    return;
                }
                b"250 OK queued\r\n"
            } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if upper.starts_with("QUIT") {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"502 not implemented\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}
