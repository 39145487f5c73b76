// Turns a bzImage (what Debian ships as /boot/vmlinuz-*) into the ELF vmlinux that QEMU's microvm
// (PVH) and Firecracker boot. The compressed kernel sits where the boot protocol's setup header
// says (payload_offset/payload_length); its magic picks the decompressor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::image {

struct KernelPayload {
  std::string format;          // "lz4", "xz", "gzip", "zstd", "lzma" or "bzip2"
  uint64_t offset = 0;         // in the bzImage
  uint64_t length = 0;         // of the compressed stream, without the size the kernel appends
  int64_t expected_size = -1;  // of the decompressed vmlinux when the build appended it
};

// Finds the compressed payload in a bzImage's bytes. Pure: unit-testable without files.
Result<KernelPayload> LocatePayload(std::string_view bzimage);

// Decompresses bzimage's payload into `out` (with the host's lz4/xz/gzip/zstd tool) and checks
// that the result is an x86-64 ELF of the expected size. `work` holds a temporary file.
Status ExtractVmlinux(const std::filesystem::path& bzimage, const std::filesystem::path& out,
                      const std::filesystem::path& work);

// True when the file starts with the ELF magic.
bool IsElf(const std::filesystem::path& path);

}  // namespace hearth::image
