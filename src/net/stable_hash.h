// A hash that is the same in every build and run (FNV-1a, 64 bit), for names derived from data
// that must not change across restarts.
#pragma once

#include <cstdint>
#include <string_view>

namespace hearth::net {

inline uint64_t StableHash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace hearth::net
