#include "image/guest_init.h"

namespace hearth::image {

const std::vector<GuestModule>& GuestModules() {
  static const std::vector<GuestModule> modules = {
      {"virtio", "drivers/virtio/virtio"},
      {"virtio_ring", "drivers/virtio/virtio_ring"},
      {"virtio_mmio", "drivers/virtio/virtio_mmio"},
      {"virtio_pci_modern_dev", "drivers/virtio/virtio_pci_modern_dev"},
      {"virtio_pci_legacy_dev", "drivers/virtio/virtio_pci_legacy_dev"},
      {"virtio_pci", "drivers/virtio/virtio_pci"},
      {"failover", "net/core/failover"},
      {"net_failover", "drivers/net/net_failover"},
      {"virtio_net", "drivers/net/virtio_net"},
      {"virtio_blk", "drivers/block/virtio_blk"},
      // The host's channel to the guest agent (virtio-serial port org.hearth.agent).
      {"virtio_console", "drivers/char/virtio_console"},
      // The power button: no dependencies.
      {"button", "drivers/acpi/button"},
      {"evdev", "drivers/input/evdev"},
  };
  return modules;
}

const std::vector<std::string_view>& BusyboxApplets() {
  static const std::vector<std::string_view> applets = {
      "sh",  "mount", "insmod", "ip",       "ipcalc", "nc",       "cat",    "echo",  "sleep",
      "awk", "mkdir", "printf", "adjtimex", "grep",   "hostname", "ls",     "dmesg", "ps",
      "tr",  "cut",   "date",   "uname",    "wget",   "poweroff", "reboot", "acpid", "sync"};
  return applets;
}

// PID 1. It must never exit (the kernel panics), so failures are reported and it carries on.
std::string_view InitScript() {
  return R"INIT(#!/bin/sh
export PATH=/bin
mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /run /tmp

for m in $(cat /etc/hearth/modules); do
  insmod "/lib/modules/$m.ko" 2>/dev/null || echo "hearth: insmod $m failed" >/dev/console
done

# The ACPI power button (the host's system_powerdown): button.ko reports it as KEY_POWER on
# /dev/input/event*, and acpid runs /etc/acpi/power-off (see /etc/acpid.conf). acpid writes its
# pid file once it has opened the input devices.
acpid_pid=
if [ -e /dev/input/event0 ]; then
  acpid_pid=/run/acpid.pid
  acpid -f -l /run/acpid.log -p "$acpid_pid" &
else
  echo "hearth: no input device for the power button (button/evdev missing?)" >/dev/console
fi

# The guest agent (/bin/hearth-agent) answers the host on the virtio-serial port org.hearth.agent:
# "settime SECONDS" right after a resume (the clock stood still while the VM was suspended).
agent_port() {
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.hearth.agent ] && { echo "/dev/${p##*/}"; return; }
  done
}
agent() {
  # The port appears once virtio_console has probed the device: wait for it (5 s at most).
  i=0
  port=$(agent_port)
  while [ -z "$port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); port=$(agent_port); done
  if [ -z "$port" ] || [ ! -e "$port" ]; then
    echo "hearth: no agent port (virtio_console missing?)" >/dev/console
    return
  fi
  exec /bin/hearth-agent "$port"
}
agent &

name=hearth addr= gw=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hearth.name=*) name="${arg#*=}" ;;
    hearth.ip=*) addr="${arg#*=}" ;;
    hearth.gw=*) gw="${arg#*=}" ;;
    ip=*:*)
      # ip=client:server:gw:netmask:hostname:device:autoconf
      old_ifs="$IFS"; IFS=:
      set -- ${arg#ip=}
      IFS="$old_ifs"
      c="$1" g="$3" m="$4" h="$5"
      if [ -n "$c" ]; then
        PREFIX=24
        [ -n "$m" ] && eval "$(ipcalc -p "$c" "$m")"
        addr="$c/$PREFIX"
      fi
      [ -n "$g" ] && gw="$g"
      [ -n "$h" ] && [ "$name" = hearth ] && name="$h"
      ;;
  esac
done
echo "$name" >/run/name
hostname "$name" 2>/dev/null

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  # IPv4 only: no router solicitations or other IPv6 chatter that would count as activity.
  echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
  echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
  [ -n "$addr" ] && ip addr add "$addr" dev eth0
  ip link set eth0 up
  [ -n "$gw" ] && ip route add default via "$gw"
else
  echo "hearth: no eth0 (virtio-net missing?)" >/dev/console
fi

nc -ll -p 80 -e /bin/hearth-http &
# Ready means listening: local port 80 (0050) in state LISTEN (0A) in /proc/net/tcp{,6}; and
# shutting down on the power button from then on.
ready() {
  grep -qE ':0050 0+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null &&
    { [ -z "$acpid_pid" ] || [ -e "$acpid_pid" ]; }
}
i=0
until ready || [ $i -ge 500 ]; do
  sleep 0.01; i=$((i + 1))
done
read -r up _ </proc/uptime
echo "hearth: guest ready name=$name ip=${addr:-none} uptime=$up" >/dev/console

while :; do sleep 3600; done
)INIT";
}

// One HTTP/1.0 exchange on stdin/stdout, run by `nc -ll -e` for each connection.
std::string_view HttpHandlerScript() {
  return R"HTTP(#!/bin/sh
export PATH=/bin
cr=$(printf '\r')
read -r -t 10 method target _ || exit 0
# Drain the headers so that closing the socket does not reset it under the client.
while read -r -t 10 line; do
  case "$line" in "" | "$cr") break ;; esac
done
status="200 OK"
case "${target%%\?*}" in
  /) body=$(cat /run/name) ;;
  /healthz) body=ok ;;
  /bootid) body=$(cat /proc/sys/kernel/random/boot_id) ;;
  /meminfo) body=$(cat /proc/meminfo) ;;
  /count) body=$(($(cat /run/count 2>/dev/null || echo 0) + 1)); echo "$body" >/run/count ;;
  /time) body=$(adjtimex | awk '/tv_sec/ {s = $2} /tv_usec/ {u = $2} END {printf "%d.%06d", s, u}') ;;
  *) status="404 Not Found" body="not found" ;;
esac
[ "$method" = GET ] || [ "$method" = HEAD ] || { status="405 Method Not Allowed"; body="GET only"; }
printf 'HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' \
  "$status" $((${#body} + 1))
[ "$method" = HEAD ] || printf '%s\n' "$body"
)HTTP";
}

// PID 1 is the /init script, which cannot be asked to shut down (busybox poweroff without -f
// would signal it): this syncs and calls reboot(2) itself. With -no-reboot QEMU then exits.
std::string_view PowerOffScript() {
  return R"OFF(#!/bin/sh
export PATH=/bin
echo "hearth: power button pressed, powering off" >/dev/console
sync
poweroff -f
)OFF";
}

}  // namespace hearth::image
