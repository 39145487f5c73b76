// Runs a program to completion with fork/exec: argv is data, never a shell string. The one seam
// between the image builder and the host's tools (apt-get, dpkg-deb, lz4, gzip, xz). The
// implementation is hearth's single fork/exec, common/subprocess.h; these names stay for callers.
#pragma once

#include "common/subprocess.h"

namespace hearth::image {

using hearth::CommandOptions;
using hearth::CommandOutput;
using hearth::FileToFile;
using hearth::InDirectory;
using hearth::QuoteArgv;
using hearth::RunCommand;

}  // namespace hearth::image
