#include "image/cpio_archive.h"

#include <fmt/format.h>
#include <sys/stat.h>

namespace hearth::image {

void CpioArchive::AddDirectory(std::string_view path, uint32_t mode) {
  Add(path, S_IFDIR | mode, {});
}

void CpioArchive::AddFile(std::string_view path, std::string_view contents, uint32_t mode) {
  Add(path, S_IFREG | mode, contents);
}

void CpioArchive::AddSymlink(std::string_view path, std::string_view target) {
  Add(path, S_IFLNK | 0777, target);
}

void CpioArchive::AddCharDevice(std::string_view path, uint32_t major, uint32_t minor,
                                uint32_t mode) {
  Add(path, S_IFCHR | mode, {}, major, minor);
}

std::string CpioArchive::Finish() {
  Add("TRAILER!!!", 0, {});
  return std::move(bytes_);
}

void CpioArchive::Add(std::string_view path, uint32_t mode, std::string_view data,
                      uint32_t rdev_major, uint32_t rdev_minor) {
  uint32_t ino = path == "TRAILER!!!" ? 0 : next_ino_++;
  uint32_t nlink = (mode & S_IFMT) == S_IFDIR ? 2 : 1;
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
  // rdevminor, namesize (with its NUL), check.
  bytes_ += fmt::format(
      "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}"
      "{:08X}{:08X}",
      ino, mode, 0, 0, nlink, 0, data.size(), 0, 0, rdev_major, rdev_minor, path.size() + 1, 0);
  bytes_ += path;
  bytes_ += '\0';
  Pad4();
  bytes_ += data;
  Pad4();
}

void CpioArchive::Pad4() {
  while (bytes_.size() % 4 != 0) bytes_ += '\0';
}

}  // namespace hearth::image
