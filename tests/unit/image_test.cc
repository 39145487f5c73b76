// The pure parts of the image builder: locating a bzImage's compressed kernel and writing the
// initramfs archive. The whole build is covered by tests/e2e/image_boot_test.cc.
#include <gtest/gtest.h>

#include <cstring>

#include "image/cpio_archive.h"
#include "image/vmlinux.h"

namespace hearth::image {
namespace {

void PutLe32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// A minimal bzImage: `setup_sects` setup sectors after the boot sector, then `payload` placed
// `offset` bytes into the protected-mode code, with its uncompressed size appended.
std::string FakeBzImage(uint8_t setup_sects, uint32_t offset, const std::string& payload,
                        uint32_t appended_size) {
  size_t code = (setup_sects == 0 ? 4 : setup_sects) + 1;
  std::string b((code * 512) + offset + payload.size() + 4 + 16, '\0');
  b[0x1f1] = static_cast<char>(setup_sects);
  b.replace(0x202, 4, "HdrS");
  PutLe32(b, 0x248, offset);
  PutLe32(b, 0x24c, static_cast<uint32_t>(payload.size() + 4));
  b.replace(code * 512 + offset, payload.size(), payload);
  PutLe32(b, code * 512 + offset + payload.size(), appended_size);
  return b;
}

TEST(VmlinuxTest, LocatesAnLz4PayloadFromTheBootHeader) {
  // The legacy LZ4 frame magic the kernel's lz4 compression writes.
  std::string payload = std::string("\x02\x21\x4c\x18", 4) + std::string(100, 'x');
  std::string b = FakeBzImage(30, 0x3e0, payload, 53243444);
  auto p = LocatePayload(b);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->format, "lz4");
  EXPECT_EQ(p->offset, 31 * 512 + 0x3e0u);
  EXPECT_EQ(p->length, payload.size());
  EXPECT_EQ(p->expected_size, 53243444);
}

TEST(VmlinuxTest, ZeroSetupSectorsMeansFour) {
  std::string payload = std::string("\x02\x21\x4c\x18", 4) + std::string(16, 'y');
  auto p = LocatePayload(FakeBzImage(0, 0, payload, 1000));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->offset, 5 * 512u);
}

TEST(VmlinuxTest, RefusesWhatIsNotABzImage) {
  EXPECT_FALSE(LocatePayload(std::string(4096, '\0')));
  EXPECT_FALSE(LocatePayload("short"));
  std::string payload = std::string("\x02\x21\x4c\x18", 4) + std::string(16, 'y');
  std::string b = FakeBzImage(30, 0, payload, 1000);
  PutLe32(b, 0x24c, 1 << 30);  // payload length past the end of the file
  auto outside = LocatePayload(b);
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message.find("outside the file"), std::string::npos);
  auto unknown = LocatePayload(FakeBzImage(30, 0, "ABCDEFGHIJKLMNOP", 1000));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown compression"), std::string::npos);
}

// Reads the newc headers back: names, modes and data in order.
struct Entry {
  std::string name;
  uint32_t mode;
  std::string data;
};
std::vector<Entry> ReadNewc(const std::string& a) {
  std::vector<Entry> out;
  size_t pos = 0;
  auto field = [&](int i) {
    return static_cast<uint32_t>(std::stoul(a.substr(pos + 6 + 8 * i, 8), nullptr, 16));
  };
  while (pos + 110 <= a.size()) {
    EXPECT_EQ(a.substr(pos, 6), "070701");
    uint32_t mode = field(1), filesize = field(6), namesize = field(11);
    std::string name = a.substr(pos + 110, namesize - 1);
    size_t data = (pos + 110 + namesize + 3) & ~size_t{3};
    out.push_back({name, mode, a.substr(data, filesize)});
    pos = (data + filesize + 3) & ~size_t{3};
    if (name == "TRAILER!!!") break;
  }
  return out;
}

TEST(CpioArchiveTest, WritesNewcEntriesTheKernelCanUnpack) {
  CpioArchive a;
  a.AddDirectory("bin");
  a.AddFile("init", "#!/bin/sh\n", 0755);
  a.AddSymlink("bin/sh", "busybox");
  a.AddCharDevice("dev/console", 5, 1);
  EXPECT_EQ(a.entries(), 4u);
  std::string bytes = a.Finish();
  EXPECT_EQ(bytes.size() % 4, 0u);
  auto entries = ReadNewc(bytes);
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].name, "bin");
  EXPECT_EQ(entries[0].mode, 040755u);
  EXPECT_EQ(entries[1].name, "init");
  EXPECT_EQ(entries[1].mode, 0100755u);
  EXPECT_EQ(entries[1].data, "#!/bin/sh\n");
  EXPECT_EQ(entries[2].mode & 0170000, 0120000u);
  EXPECT_EQ(entries[2].data, "busybox");
  EXPECT_EQ(entries[3].mode & 0170000, 0020000u);
  EXPECT_EQ(entries[4].name, "TRAILER!!!");
  CpioArchive same;
  same.AddDirectory("bin");
  same.AddFile("init", "#!/bin/sh\n", 0755);
  same.AddSymlink("bin/sh", "busybox");
  same.AddCharDevice("dev/console", 5, 1);
  EXPECT_EQ(same.Finish(), bytes) << "the same inputs give the same bytes";
}

}  // namespace
}  // namespace hearth::image
