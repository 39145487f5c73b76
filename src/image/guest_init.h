// What runs inside the default image: the initramfs's /init and the HTTP handler, as text, and
// the kernel modules /init loads. Plain data, so the builder and its tests share one definition.
//
// Kernel command line the guest understands (read from /proc/cmdline):
//   hearth.name=NAME        what GET / answers (default "hearth")
//   hearth.ip=ADDR/PREFIX   static address of eth0, e.g. 172.30.0.2/30
//   hearth.gw=ADDR          default route
//   ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:AUTOCONF   the kernel's static form, also read
// Console: "hearth: guest ready ..." once the HTTP server listens on port 80 and the power
// button is watched.
// HTTP (port 80): GET / → name, /healthz → ok, /bootid → the kernel's boot id,
// /time → the guest's Unix time with microseconds; each body ends with "\n".
// Power button: the host's request to shut down (QMP system_powerdown: the ACPI power button of
// microvm with acpi=on) makes the guest sync and power off, so that QEMU (-no-reboot) exits.
// button.ko turns the ACPI event into KEY_POWER on an evdev node (evdev.ko), busybox acpid
// (started by /init) maps that to "PWRF" and runs /etc/acpi/power-off (kAcpidConf).
#pragma once

#include <string_view>
#include <vector>

namespace hearth::image {

// The line /init prints on the console when the guest serves HTTP.
inline constexpr std::string_view kGuestReadyMarker = "hearth: guest ready";

// The base kernel command line for the default image. Hypervisor drivers append
// tsc_early_khz=<host kHz> (microvm under TCG hangs calibrating the TSC without it) and the
// hearth.* parameters.
inline constexpr std::string_view kDefaultCmdline =
    "console=ttyS0 quiet cryptomgr.notests no_timer_check random.trust_cpu=on 8250.nr_uarts=1";

struct GuestModule {
  std::string_view name;  // file name in the initramfs: /lib/modules/<name>.ko
  std::string_view path;  // under lib/modules/<release>/kernel/, without ".ko"
};

// The modules packed into the initramfs; /init loads them in the order of their "depends="
// modinfo, which the builder reads from the .ko files.
const std::vector<GuestModule>& GuestModules();

// busybox applets the scripts use, linked into /bin.
const std::vector<std::string_view>& BusyboxApplets();

// /etc/acpid.conf: acpid's event → action table (the action is a file under /etc/acpi).
inline constexpr std::string_view kAcpidConf = "PWRF power-off\n";

std::string_view InitScript();

// The guest agent /init runs on the virtio-serial port org.hearth.agent (src/agent/hearth_agent.c,
// built with hearth and embedded): a static x86-64 executable.
std::string_view GuestAgentBinary();
std::string_view HttpHandlerScript();
// /etc/acpi/power-off, run by acpid when the power button is pressed.
std::string_view PowerOffScript();

}  // namespace hearth::image
