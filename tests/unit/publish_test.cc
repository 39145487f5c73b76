// Published ports as docker writes them: "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]", in the CLI's
// string form and the API's object form, and which mappings claim the same host socket.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "model/vm.h"
#include "model/vm_json.h"

namespace hearth {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

PortMapping Map(int host, int guest, Protocol p = Protocol::kTcp, std::string ip = "") {
  return PortMapping{host, guest, p, std::move(ip)};
}

TEST(PublishTest, ParsesDockersForms) {
  EXPECT_EQ(*ParsePortMapping("8080:80"), Map(8080, 80));
  EXPECT_EQ(*ParsePortMapping("5353:53/udp"), Map(5353, 53, Protocol::kUdp));
  EXPECT_EQ(*ParsePortMapping("127.0.0.1:8085:80"), Map(8085, 80, Protocol::kTcp, "127.0.0.1"));
  EXPECT_EQ(*ParsePortMapping("10.1.2.3:5353:53/udp"), Map(5353, 53, Protocol::kUdp, "10.1.2.3"));
  EXPECT_EQ(*ParsePortMapping("0.0.0.0:8080:80/tcp"), Map(8080, 80))
      << "0.0.0.0 is all addresses, the same as no address";
}

TEST(PublishTest, FormatsBackToTheSameText) {
  for (std::string text :
       {"8080:80/tcp", "5353:53/udp", "127.0.0.1:8085:80/tcp", "192.168.1.20:5353:53/udp"}) {
    EXPECT_EQ(FormatPortMapping(*ParsePortMapping(text)), text);
  }
}

TEST(PublishTest, RefusesBadTextNamingTheValueAndTheForm) {
  auto refused = [](std::string_view text, std::string_view says) {
    auto p = ParsePortMapping(text);
    ASSERT_FALSE(p) << text;
    EXPECT_EQ(p.error().code, Code::kInvalidArgument);
    EXPECT_THAT(p.error().message, HasSubstr(says)) << text;
  };
  refused("8080", "'8080' is not [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]");
  refused("8080:80/sctp", "protocol 'sctp' is not one of: tcp, udp");
  refused("localhost:8080:80", "host address 'localhost' is not an IPv4 address");
  refused("1.2.3:8080:80", "host address '1.2.3' is not an IPv4 address");
  refused("::1:8080:80", "host address '::1' is IPv6, which publish does not support");
  refused("[::1]:8080:80", "host address '[::1]' is IPv6");
  refused(":8080:80", "host address '' is not an IPv4 address");
  refused("127.0.0.1:x:80", "'x' is not a port number");
  refused("127.0.0.1:8080:", "'' is not a port number");
}

TEST(PublishTest, OverlapsOnTheSameAddressOrWithAllAddresses) {
  PortMapping all = Map(8080, 80), local = Map(8080, 81, Protocol::kTcp, "127.0.0.1"),
              other = Map(8080, 82, Protocol::kTcp, "10.1.2.3");
  EXPECT_TRUE(PublishOverlaps(all, local));
  EXPECT_TRUE(PublishOverlaps(local, all));
  EXPECT_TRUE(PublishOverlaps(local, Map(8080, 90, Protocol::kTcp, "127.0.0.1")));
  EXPECT_FALSE(PublishOverlaps(local, other)) << "two different host addresses";
  EXPECT_FALSE(PublishOverlaps(all, Map(8080, 80, Protocol::kUdp))) << "tcp and udp";
  EXPECT_FALSE(PublishOverlaps(local, Map(8080, 80, Protocol::kUdp, "127.0.0.1")));
  EXPECT_FALSE(PublishOverlaps(all, Map(8081, 80)));
}

VmSpec SpecFrom(const json& publish) {
  VmSpec spec;
  auto s = ApplySpecJson(json{{"publish", publish}}, spec);
  EXPECT_TRUE(s) << s.error().message;
  return spec;
}

TEST(PublishTest, JsonTakesTheHostAddressInBothForms) {
  VmSpec spec =
      SpecFrom(json::array({"127.0.0.1:8085:80/udp",
                            {{"host_port", 8086}, {"guest_port", 80}, {"host_ip", "10.1.2.3"}},
                            {{"host_port", 8087}, {"guest_port", 80}, {"host_ip", "0.0.0.0"}},
                            {{"host_port", 8088}, {"guest_port", 80}, {"host_ip", nullptr}}}));
  EXPECT_EQ(spec.publish, (std::vector<PortMapping>{Map(8085, 80, Protocol::kUdp, "127.0.0.1"),
                                                    Map(8086, 80, Protocol::kTcp, "10.1.2.3"),
                                                    Map(8087, 80), Map(8088, 80)}));
}

TEST(PublishTest, JsonWritesObjectsWithTheHostAddress) {
  VmSpec spec;
  spec.publish = {Map(8080, 80), Map(5353, 53, Protocol::kUdp, "127.0.0.1")};
  EXPECT_EQ(SpecToJson(spec)["publish"], json::parse(R"([
              {"host_port": 8080, "guest_port": 80, "protocol": "tcp", "host_ip": "0.0.0.0"},
              {"host_port": 5353, "guest_port": 53, "protocol": "udp", "host_ip": "127.0.0.1"}
            ])"));
  VmSpec back;
  ASSERT_TRUE(ApplySpecJson(SpecToJson(spec, false), back));
  EXPECT_EQ(back.publish, spec.publish);
}

TEST(PublishTest, AStoredSpecFromBeforeHostAddressesStillLoads) {
  // What SpecToJson wrote before host_ip existed.
  VmSpec spec = SpecFrom(json::parse(R"([{"host_port": 8080, "guest_port": 80,
                                          "protocol": "tcp"}])"));
  EXPECT_EQ(spec.publish, std::vector<PortMapping>{Map(8080, 80)});
}

TEST(PublishTest, JsonRefusesABadHostAddressNamingTheField) {
  auto refused = [](const json& item, std::string_view field, std::string_view says) {
    VmSpec spec;
    auto s = ApplySpecJson(json{{"publish", json::array({item})}}, spec);
    ASSERT_FALSE(s) << item.dump();
    EXPECT_EQ(s.error().field, field);
    EXPECT_THAT(s.error().message, HasSubstr(says));
  };
  refused({{"host_port", 1}, {"guest_port", 2}, {"host_ip", "::1"}}, "publish[0].host_ip",
          "publish[0].host_ip: host address '::1' is IPv6");
  refused({{"host_port", 1}, {"guest_port", 2}, {"host_ip", "web.example"}}, "publish[0].host_ip",
          "'web.example' is not an IPv4 address");
  refused({{"host_port", 1}, {"guest_port", 2}, {"host_ip", 7}}, "publish[0].host_ip",
          "expected a string or null");
  refused("::1:8080:80", "publish[0]", "IPv6");
}

TEST(PublishTest, TheCliShowsTheHostAddressOnlyWhenThereIsOne) {
  VmSpec spec;
  spec.publish = {Map(8080, 80), Map(8085, 80, Protocol::kTcp, "127.0.0.1"),
                  Map(5353, 53, Protocol::kUdp)};
  json vm = SpecToJson(spec);
  vm["name"] = "web";
  vm["state"] = "created";
  std::string detail = cli::VmDetailTable(vm);
  EXPECT_THAT(detail, HasSubstr("8080:80/tcp,127.0.0.1:8085:80/tcp,5353:53/udp")) << detail;
}

}  // namespace
}  // namespace hearth
