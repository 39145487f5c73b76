// Tap names and guest MACs: derived from the VM id and address, valid interface names.
#include <gtest/gtest.h>

#include <set>

#include "net/tap.h"

namespace hearth::net {
namespace {

TEST(NetTapTest, TapNameIsThePrefixAndTwelveHexDigitsOfTheId) {
  EXPECT_EQ(TapName("vm-0123456789abcdef"), "hth0123456789ab");
  EXPECT_EQ(TapName("vm-ffffffffffff"), "hthffffffffffff");
  EXPECT_EQ(TapName("vm-0123456789abcdef").size(), 15u);
  EXPECT_TRUE(TapName("vm-0123456789abcdef").starts_with(kTapPrefix));
}

TEST(NetTapTest, TapNameOfAnOddIdIsAHashThatIsStillAValidName) {
  for (std::string_view id : {"", "vm-", "vm-0123", "vm-0123456789ABCDEF", "web",
                              "vm-../../etc/passwd", "vm-0123456789a:cdef", "x y"}) {
    std::string name = TapName(id);
    EXPECT_EQ(name.size(), 15u) << id;
    EXPECT_TRUE(name.starts_with(kTapPrefix)) << id;
    EXPECT_EQ(name.find_first_not_of("0123456789abcdef", kTapPrefix.size()), std::string::npos)
        << id << " -> " << name;
    EXPECT_TRUE(ValidateInterfaceName(name)) << name;
    EXPECT_EQ(TapName(id), name) << "stable for " << id;
  }
  EXPECT_NE(TapName("web"), TapName("db"));
  EXPECT_NE(TapName("vm-0123456789ABCDEF"), TapName("vm-0123456789abcdef"));
}

TEST(NetTapTest, GuestMacIsTheGuestAddressUnderALocalPrefix) {
  EXPECT_EQ(GuestMac(VmAddress{"172.30.0.2", "172.30.0.1", 30}), "52:54:ac:1e:00:02");
  EXPECT_EQ(GuestMac(VmAddress{"10.255.1.254", "10.255.1.253", 30}), "52:54:0a:ff:01:fe");
  EXPECT_EQ(GuestMac(VmAddress{"not an ip", "", 30}), "52:54:00:00:00:00");
  // Unique per address across a pool.
  auto pool = AddressPool::Parse("172.30.0.0/22");
  ASSERT_TRUE(pool);
  std::set<std::string> macs;
  std::vector<std::string> used;
  for (uint32_t i = 0; i < pool->capacity(); ++i) {
    auto a = pool->Allocate(used);
    ASSERT_TRUE(a);
    used.push_back(a->guest);
    macs.insert(GuestMac(*a));
  }
  EXPECT_EQ(macs.size(), pool->capacity());
}

TEST(NetTapTest, ValidatesInterfaceNames) {
  for (std::string_view good : {"hth0123456789ab", "eth0", "a", "veth-x.1"}) {
    EXPECT_TRUE(ValidateInterfaceName(good)) << good;
  }
  for (std::string_view bad :
       std::vector<std::string_view>{"", "hth0123456789abc", ".", "..", "a/b", "a:1", "a b", "a\tb",
                                     std::string_view("a\0b", 3), "a\x7f"}) {
    auto s = ValidateInterfaceName(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
    EXPECT_NE(s.error().message.find("interface name"), std::string::npos);
  }
}

}  // namespace
}  // namespace hearth::net
