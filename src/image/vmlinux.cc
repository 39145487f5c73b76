#include "image/vmlinux.h"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <fstream>
#include <sstream>

#include "image/command.h"

namespace hearth::image {
namespace {

struct Magic {
  std::string_view bytes;
  std::string_view format;
  bool size_appended;  // the kernel's Makefile appends the decompressed size (le32)
};

constexpr std::array<Magic, 6> kMagics = {{
    {"\x02\x21\x4c\x18", "lz4", true},
    {"\xfd\x37\x7a\x58\x5a\x00", "xz", true},
    {"\x1f\x8b", "gzip", false},
    {"\x28\xb5\x2f\xfd", "zstd", true},
    {"\x5d\x00\x00", "lzma", true},
    {"BZh", "bzip2", true},
}};

uint32_t Le32(std::string_view b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

Result<std::string> ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(Code::kNotFound, fmt::format("cannot read {}", path.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Decompressor(std::string_view format) {
  if (format == "lz4") return {"lz4", "-d", "-c"};
  if (format == "zstd") return {"zstd", "-d", "-c", "-q"};
  if (format == "lzma") return {"xz", "--format=lzma", "-d", "-c"};
  if (format == "bzip2") return {"bzip2", "-d", "-c"};
  return {std::string(format), "-d", "-c"};  // xz, gzip
}

}  // namespace

Result<KernelPayload> LocatePayload(std::string_view b) {
  // Linux boot protocol: "HdrS" at 0x202, setup_sects at 0x1f1, payload_offset/length at
  // 0x248/0x24c (protocol 2.08+), relative to the protected-mode code after the setup sectors.
  if (b.size() < 0x250 || b.substr(0x202, 4) != "HdrS") {
    return Fail(Code::kInvalidArgument, "not a bzImage (no \"HdrS\" boot header at 0x202)");
  }
  uint32_t setup_sects = static_cast<unsigned char>(b[0x1f1]);
  if (setup_sects == 0) setup_sects = 4;
  uint64_t start = (setup_sects + 1) * 512ULL + Le32(b, 0x248);
  uint64_t length = Le32(b, 0x24c);
  if (length < 8 || start + length > b.size()) {
    return Fail(Code::kInvalidArgument,
                fmt::format("bzImage payload {}+{} lies outside the file ({} bytes)", start, length,
                            b.size()));
  }
  std::string_view payload = b.substr(start, length);
  for (const Magic& m : kMagics) {
    if (payload.substr(0, m.bytes.size()) != m.bytes) continue;
    KernelPayload p{std::string(m.format), start, length, -1};
    if (m.size_appended) {
      p.length -= 4;
      p.expected_size = Le32(payload, payload.size() - 4);
    }
    return p;
  }
  return Fail(
      Code::kInvalidArgument,
      fmt::format("bzImage payload at {} has an unknown compression (first bytes {:02x} "
                  "{:02x} {:02x} {:02x})",
                  start, static_cast<unsigned char>(payload[0]),
                  static_cast<unsigned char>(payload[1]), static_cast<unsigned char>(payload[2]),
                  static_cast<unsigned char>(payload[3])));
}

bool IsElf(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[4] = {};
  return in.read(head, 4) && std::memcmp(head,
                                         "\x7f"
                                         "ELF",
                                         4) == 0;
}

Status ExtractVmlinux(const std::filesystem::path& bzimage, const std::filesystem::path& out,
                      const std::filesystem::path& work) {
  auto bytes = ReadAll(bzimage);
  if (!bytes) return Fail(bytes.error());
  auto payload = LocatePayload(*bytes);
  if (!payload) return Fail(payload.error().Wrap(bzimage.string()));

  std::filesystem::path compressed = work / ("vmlinux." + payload->format);
  {
    std::ofstream f(compressed, std::ios::binary | std::ios::trunc);
    f.write(bytes->data() + payload->offset, static_cast<std::streamsize>(payload->length));
    if (!f) return Fail(Code::kInternal, fmt::format("writing {}", compressed.string()));
  }
  auto run = RunCommand(Decompressor(payload->format), FileToFile(compressed, out));
  std::error_code ec;
  std::filesystem::remove(compressed, ec);
  if (!run)
    return Fail(run.error().Wrap(fmt::format("decompressing the {} kernel", payload->format)));

  auto size = std::filesystem::file_size(out, ec);
  if (ec || !IsElf(out)) {
    return Fail(Code::kInternal,
                fmt::format("{}: the decompressed kernel is not an ELF file", bzimage.string()));
  }
  if (payload->expected_size >= 0 && size != static_cast<uint64_t>(payload->expected_size)) {
    return Fail(Code::kInternal,
                fmt::format("{}: decompressed kernel has {} bytes, the bzImage says {}",
                            bzimage.string(), size, payload->expected_size));
  }
  return Ok();
}

}  // namespace hearth::image
