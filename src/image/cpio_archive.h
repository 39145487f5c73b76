// An in-memory newc ("070701") cpio archive, the format the kernel unpacks as an initramfs.
// Entries are written as given: owner root, mtime 0, so the same inputs give the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hearth::image {

class CpioArchive {
 public:
  // Paths are relative to the archive root, without a leading slash ("bin/busybox").
  void AddDirectory(std::string_view path, uint32_t mode = 0755);
  void AddFile(std::string_view path, std::string_view contents, uint32_t mode = 0644);
  void AddSymlink(std::string_view path, std::string_view target);
  void AddCharDevice(std::string_view path, uint32_t major, uint32_t minor, uint32_t mode = 0600);

  // The archive with its TRAILER!!! entry; the object can be added to no further.
  std::string Finish();
  size_t entries() const { return next_ino_ - 1; }

 private:
  void Add(std::string_view path, uint32_t mode, std::string_view data, uint32_t rdev_major = 0,
           uint32_t rdev_minor = 0);
  void Pad4();

  std::string bytes_;
  uint32_t next_ino_ = 1;
};

}  // namespace hearth::image
