#!/usr/bin/env bash
# What the tests need that may not be running, started before `make test` runs them: PostgreSQL,
# MariaDB and RabbitMQ (the machine's own services, started the way this kind of machine starts
# them if one does not answer), Zookeeper and Chromium (installed from Debian's packages if missing). Each
# step is a no-op when the service already answers, so a second run costs a few milliseconds.
# A service that cannot be started is said here; the tests that need it then skip with that
# reason, or fail under CI=true.
set -uo pipefail

listening() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# The machine's own services should already run, but a CI run uses them as the previous session
# left them: one stopped by hand (or started by a session and gone with it) would fail every test
# that needs it. Start any that does not answer, with the commands this kind of machine uses, and
# wait until it listens.
ensure_service() {
    local name=$1 port=$2
    shift 2
    listening "$port" && return 0
    echo "$name does not answer on 127.0.0.1:$port; starting it" >&2
    "$@" >/dev/null 2>&1 || true
    for _ in $(seq 90); do
        listening "$port" && return 0
        sleep 1
    done
    echo "$name did not come up on 127.0.0.1:$port within 90 s" >&2
    return 1
}
ensure_service PostgreSQL 5432 \
    bash -c 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start'
ensure_service MariaDB 3306 \
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
ensure_service RabbitMQ 5672 rabbitmq-server -detached
if command -v rabbitmqctl >/dev/null; then
    # The port opens a moment before the broker accepts work.
    timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

# Zookeeper (the registry): Debian's zookeeperd, started through the package's own init script
# because CI has no systemd. Nothing happens when something already listens on 127.0.0.1:2181.
zk_serving() {
    # `srvr` is the one four-letter word Zookeeper 3.5+ answers by default (`ruok` is off), and
    # its "Mode:" line appears only once the server serves requests.
    local out
    out=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && cat <&3' 2>/dev/null) || return 1
    [[ $out == *"Mode: "* ]]
}
start_zookeeper() {
    listening 2181 && return 0
    if ! dpkg-query -W -f='${Status}' zookeeperd 2>/dev/null | grep -q 'ok installed'; then
        local log
        log=$(mktemp)
        # The package lists may be missing or stale on a fresh machine: update only if installing fails.
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeperd >"$log" 2>&1; then
            apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; return 1; }
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeperd >"$log" 2>&1 || { cat "$log" >&2; return 1; }
        fi
        rm -f "$log"
    fi
    /etc/init.d/zookeeper start >/dev/null
    for _ in $(seq 60); do
        zk_serving && return 0
        sleep 1
    done
    echo "Zookeeper did not come up on 127.0.0.1:2181 within 60 s; see /var/log/zookeeper" >&2
    return 1
}
start_zookeeper

# Chromium (Debian's), for the console's browser tests (tests/e2e/test_console.py, driven by
# Playwright, whose own browser download does not work here). Installed only when missing.
install_chromium() {
    [[ -x /usr/bin/chromium ]] && return 0
    local log
    log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$log" 2>&1; then
        apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$log" 2>&1 || { cat "$log" >&2; return 1; }
    fi
    rm -f "$log"
}
install_chromium || echo "chromium could not be installed: the console's browser tests cannot run" >&2
exit 0  # what could not be started is said above; the tests say what it costs them

