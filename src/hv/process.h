// VMM processes: started detached from hearthd (their own session, so that they outlive it and a
// Ctrl-C on hearthd's terminal does not reach them) and identified by pid *and* start time, so that
// a recycled pid is never mistaken for a VM after a restart. The implementation is common's
// (common/subprocess.h starts them, common/process.h finds and signals them); these names stay for
// the drivers.
#pragma once

#include "common/process.h"
#include "common/subprocess.h"

namespace hearth::hv {

using hearth::FindProcesses;
using hearth::IsAlive;
using hearth::OpenPidfd;
using hearth::ProcessCmdline;
using hearth::ProcessId;
using hearth::ProcessStartTime;
using hearth::SignalProcess;
using hearth::Spawn;
using hearth::SpawnOptions;
using hearth::WaitForExit;

}  // namespace hearth::hv
