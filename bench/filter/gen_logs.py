#!/usr/bin/env python3
"""Deterministic log corpora for the filter benchmark.

    gen_logs.py auth  LINES OUT [SEED]   # syslog auth.log: sshd, CRON, sudo, logind, su, ...
    gen_logs.py nginx LINES OUT [SEED]   # nginx access log (combined format)

The same arguments always give the same bytes (a seeded generator, a fixed start date).
SEED picks another corpus of the same kind (the benchmark uses none; the profile-guided
build trains on another seed's logs, so that it learns the workload, not the bytes it is
measured on).
Most lines are ordinary traffic; a minority are attacks: password guessing and scans
against sshd, probes for admin pages against nginx. Addresses come from the documentation
ranges (RFC 5737, RFC 3849) plus private ones for the "legitimate" users.
"""

import random
import sys

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS_IN = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

USERS = ["alice", "bob", "carol", "deploy", "git", "backup", "www-data", "postgres"]
GUESSES = [
    "root", "admin", "test", "oracle", "ubuntu", "pi", "user", "guest", "ftpuser", "postgres",
    "mysql", "support", "git", "nagios", "hadoop", "dev", "jenkins", "user1", "123456", "ec2-user",
]
HOSTS = ["web1"]


class Clock:
    """A syslog clock that starts on 2 March and moves forward by a few hundred ms a line."""

    def __init__(self, rnd):
        self.rnd = rnd
        self.month = 2  # March (0-based)
        self.day = 2
        self.secs = 0.0

    def tick(self):
        self.secs += self.rnd.expovariate(1 / 0.25)
        while self.secs >= 86400:
            self.secs -= 86400
            self.day += 1
            if self.day > DAYS_IN[self.month]:
                self.day = 1
                self.month = (self.month + 1) % 12

    def hms(self):
        s = int(self.secs)
        return s // 3600, (s // 60) % 60, s % 60

    def syslog(self):
        h, m, s = self.hms()
        return "%s %2d %02d:%02d:%02d" % (MONTHS[self.month], self.day, h, m, s)

    def clf(self, year):
        h, m, s = self.hms()
        return "%02d/%s/%d:%02d:%02d:%02d +0000" % (self.day, MONTHS[self.month], year, h, m, s)


def attacker(rnd):
    r = rnd.random()
    if r < 0.45:
        return "198.51.100.%d" % rnd.randint(1, 254)
    if r < 0.9:
        return "203.0.113.%d" % rnd.randint(1, 254)
    return "2001:db8:%x::%x" % (rnd.randint(0, 0xFFFF), rnd.randint(1, 0xFFFF))


def friend(rnd):
    return "10.%d.%d.%d" % (rnd.randint(0, 3), rnd.randint(0, 255), rnd.randint(1, 254))


def auth_lines(n, rnd):
    clock = Clock(rnd)
    out = []
    host = HOSTS[0]

    def emit(prog, msg):
        clock.tick()
        out.append("%s %s %s: %s\n" % (clock.syslog(), host, prog, msg))

    while len(out) < n:
        pid = rnd.randint(1000, 65000)
        sshd = "sshd[%d]" % pid
        port = rnd.randint(1024, 65535)
        r = rnd.random()
        if r < 0.22:
            # A legitimate login: accepted, session opened, later closed.
            u = rnd.choice(USERS)
            ip = friend(rnd)
            how = rnd.choice(["publickey", "publickey", "password"])
            tail = ": ED25519 SHA256:%s" % "".join(rnd.choice("abcdefghijkLMNOP0123456789+/") for _ in range(43)) if how == "publickey" else ""
            emit(sshd, "Accepted %s for %s from %s port %d ssh2%s" % (how, u, ip, port, tail))
            emit(sshd, "pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)" % (u, 1000 + USERS.index(u)))
            emit("systemd-logind[512]", "New session %d of user %s." % (rnd.randint(1, 99999), u))
            emit(sshd, "Received disconnect from %s port %d:11: disconnected by user" % (ip, port))
            emit(sshd, "Disconnected from user %s %s port %d" % (u, ip, port))
            emit(sshd, "pam_unix(sshd:session): session closed for user %s" % u)
        elif r < 0.27:
            # Password guessing: a few failures, then the attacker gives up.
            ip = attacker(rnd)
            u = rnd.choice(GUESSES)
            invalid = u not in ("root", "git", "postgres")
            if invalid:
                emit(sshd, "Invalid user %s from %s port %d" % (u, ip, port))
            for _ in range(rnd.randint(1, 3)):
                if rnd.random() < 0.5:
                    emit(sshd, "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s%s" % (ip, "" if invalid else "  user=" + u))
                emit(sshd, "Failed password for %s%s from %s port %d ssh2" % ("invalid user " if invalid else "", u, ip, port))
            if rnd.random() < 0.3:
                emit(sshd, "error: maximum authentication attempts exceeded for %s%s from %s port %d ssh2 [preauth]" % ("invalid user " if invalid else "", u, ip, port))
                emit(sshd, "Disconnecting %s user %s %s port %d: Too many authentication failures [preauth]" % ("invalid" if invalid else "authenticating", u, ip, port))
            else:
                emit(sshd, "Connection closed by %s user %s %s port %d [preauth]" % ("invalid" if invalid else "authenticating", u, ip, port))
        elif r < 0.31:
            # Scanners: no authentication at all.
            ip = attacker(rnd)
            k = rnd.random()
            if k < 0.3:
                emit(sshd, "error: kex_exchange_identification: Connection closed by remote host")
                emit(sshd, "Connection closed by %s port %d" % (ip, port))
            elif k < 0.5:
                emit(sshd, "banner exchange: Connection from %s port %d: invalid format" % (ip, port))
            elif k < 0.7:
                emit(sshd, "Unable to negotiate with %s port %d: no matching key exchange method found. Their offer: diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1 [preauth]" % (ip, port))
            elif k < 0.85:
                emit(sshd, "Received disconnect from %s port %d:11: Bye Bye [preauth]" % (ip, port))
                emit(sshd, "Disconnected from authenticating user root %s port %d [preauth]" % (ip, port))
            else:
                emit(sshd, "Connection reset by %s port %d [preauth]" % (ip, port))
        elif r < 0.75:
            # cron jobs.
            cpid = "CRON[%d]" % pid
            u = rnd.choice(["root", "root", "www-data", "backup"])
            emit(cpid, "pam_unix(cron:session): session opened for user %s(uid=%d) by (uid=0)" % (u, 0 if u == "root" else 33))
            emit(cpid, "pam_unix(cron:session): session closed for user %s" % u)
        elif r < 0.88:
            u = rnd.choice(USERS[:4])
            cmd = rnd.choice(["/usr/bin/systemctl restart nginx", "/usr/bin/apt update", "/usr/bin/journalctl -u ssh", "/bin/cat /var/log/syslog"])
            emit("sudo", "   %s : TTY=pts/%d ; PWD=/home/%s ; USER=root ; COMMAND=%s" % (u, rnd.randint(0, 5), u, cmd))
            emit("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by %s(uid=%d)" % (u, 1000 + USERS.index(u)))
            emit("sudo", "pam_unix(sudo:session): session closed for user root")
        elif r < 0.94:
            emit("systemd-logind[512]", "Session %d logged out. Waiting for processes to exit." % rnd.randint(1, 99999))
            emit("systemd-logind[512]", "Removed session %d." % rnd.randint(1, 99999))
        elif r < 0.97:
            u = rnd.choice(USERS[:4])
            emit("su[%d]" % pid, "(to root) %s on pts/%d" % (u, rnd.randint(0, 5)))
            emit("su[%d]" % pid, "pam_unix(su-l:session): session opened for user root(uid=0) by %s(uid=%d)" % (u, 1000 + USERS.index(u)))
        else:
            emit("polkitd[733]", "Registered Authentication Agent for unix-process:%d:%d (system bus name :1.%d [/usr/bin/pkttyagent --notify-fd 5 --fallback], object path /org/freedesktop/PolicyKit1/AuthenticationAgent, locale en_US.UTF-8)" % (pid, rnd.randint(100000, 999999), rnd.randint(10, 999)))
    return out[:n]


PAGES = ["/", "/index.html", "/about", "/blog/", "/blog/2024/03/some-post", "/css/site.css", "/js/app.js",
         "/img/logo.png", "/favicon.ico", "/robots.txt", "/feed.xml", "/contact", "/api/v1/items?page=%d"]
PROBES = ["/wp-login.php", "/wp-admin.php", "/phpmyadmin/index.php", "/phpMyAdmin/", "/pma/index.php",
          "/admin/pma/", "/mysqladmin/", "/cgi-bin/test.cgi", "/webmail/", "/roundcube/", "/xampp/phpmyadmin/",
          "/.env", "/.git/config", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/boaform/admin/formLogin",
          "/wp-signup.php", "/horde/imp/", "/mail/"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/7.88.1",
]


def nginx_lines(n, rnd):
    clock = Clock(rnd)
    out = []
    while len(out) < n:
        clock.tick()
        ts = clock.clf(2026)
        if rnd.random() < 0.07:
            ip = attacker(rnd)
            path = rnd.choice(PROBES)
            method = rnd.choice(["GET", "GET", "POST", "HEAD"])
            status = 404 if rnd.random() < 0.9 else 403
            size = rnd.randint(150, 600)
            agent = rnd.choice(["Mozilla/5.0 zgrab/0.x", "python-requests/2.31.0", AGENTS[1]])
            ref = "-"
        else:
            ip = friend(rnd) if rnd.random() < 0.3 else "192.0.2.%d" % rnd.randint(1, 254)
            path = rnd.choice(PAGES)
            if "%d" in path:
                path = path % rnd.randint(1, 50)
            method = "GET" if rnd.random() < 0.93 else "POST"
            status = rnd.choice([200] * 18 + [304, 404])
            size = rnd.randint(200, 90000)
            agent = rnd.choice(AGENTS)
            ref = rnd.choice(["-", "https://example.org/", "https://www.example.com/search?q=warden"])
        out.append('%s - - [%s] "%s %s HTTP/1.1" %d %d "%s" "%s"\n' % (ip, ts, method, path, status, size, ref, agent))
    return out


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("auth", "nginx"):
        sys.exit(__doc__)
    kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seed = "warden-bench-" + kind
    if len(sys.argv) == 5:
        seed += "-" + sys.argv[4]
    rnd = random.Random(seed)
    lines = auth_lines(n, rnd) if kind == "auth" else nginx_lines(n, rnd)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)


if __name__ == "__main__":
    main()
