// Labels end to end in the model: JSON (merge patch), validation, and the list filter.
#include <gtest/gtest.h>

#include "api/request_target.h"
#include "model/validator.h"
#include "model/vm_filter.h"
#include "model/vm_json.h"

namespace hearth {
namespace {

using nlohmann::json;

TEST(VmLabelsTest, JsonMergesLabelsAndRoundTrips) {
  VmSpec spec;
  ASSERT_TRUE(ApplySpecJson(json{{"labels", {{"env", "prod"}, {"team", "a"}}}}, spec));
  ASSERT_TRUE(ApplySpecJson(json{{"labels", {{"team", nullptr}, {"tier", "web"}}}}, spec));
  EXPECT_EQ(spec.labels, (std::map<std::string, std::string>{{"env", "prod"}, {"tier", "web"}}));
  EXPECT_EQ(SpecToJson(spec)["labels"], json({{"env", "prod"}, {"tier", "web"}}));
  VmSpec back;
  ASSERT_TRUE(ApplySpecJson(SpecToJson(spec, false), back));  // as the store keeps it
  EXPECT_EQ(back.labels, spec.labels);
  ASSERT_TRUE(ApplySpecJson(json{{"labels", nullptr}}, spec));
  EXPECT_TRUE(spec.labels.empty());
  auto bad = ApplySpecJson(json{{"labels", {{"env", 3}}}}, spec);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "labels.env");
  EXPECT_FALSE(ApplySpecJson(json{{"labels", "env=prod"}}, spec));
  EXPECT_NE(ChangedFields(VmSpec{}, back), std::vector<std::string>{});
}

TEST(VmLabelsTest, KeysAndValuesFollowOneRule) {
  for (auto [key, value] : std::initializer_list<std::pair<const char*, const char*>>{
           {"env", "prod"}, {"app.kubernetes.io/name", "web-1"}, {"A_b", ""}, {"x", "V.1_a-b"}}) {
    EXPECT_TRUE(ValidateLabel(key, value)) << key << "=" << value;
  }
  for (auto [key, value] :
       std::initializer_list<std::pair<std::string, std::string>>{{"", "v"},
                                                                  {"-env", "v"},
                                                                  {"env-", "v"},
                                                                  {"env=x", "v"},
                                                                  {std::string(64, 'k'), "v"},
                                                                  {"env", "a b"},
                                                                  {"env", "a,b"},
                                                                  {"env", std::string(64, 'v')}}) {
    auto s = ValidateLabel(key, value);
    ASSERT_FALSE(s) << key << "=" << value;
    EXPECT_NE(s.error().message.find("labels."), std::string::npos) << s.error().message;
  }
}

TEST(VmLabelsTest, FilterByStatesAndEveryLabel) {
  auto f = ParseVmFilter("running,suspended", {"env=prod", "team=a"});
  ASSERT_TRUE(f) << f.error().message;
  VmRecord vm;
  vm.state = VmState::kRunning;
  vm.spec.labels = {{"env", "prod"}, {"team", "a"}, {"x", "y"}};
  EXPECT_TRUE(f->Matches(vm));
  vm.spec.labels["team"] = "b";
  EXPECT_FALSE(f->Matches(vm));  // AND
  vm.spec.labels["team"] = "a";
  vm.state = VmState::kStopped;
  EXPECT_FALSE(f->Matches(vm));
  EXPECT_TRUE(ParseVmFilter("", {})->Matches(vm));

  auto state = ParseVmFilter("running,sleeping", {});
  ASSERT_FALSE(state);
  EXPECT_EQ(state.error().field, "state");
  EXPECT_NE(state.error().message.find("'sleeping' is not a VM state"), std::string::npos);
  auto label = ParseVmFilter("", {"env"});
  ASSERT_FALSE(label);
  EXPECT_NE(label.error().message.find("label: 'env' is not KEY=VALUE"), std::string::npos);
  EXPECT_FALSE(ParseVmFilter("", {"bad key=v"}));
}

TEST(VmLabelsTest, RepeatedQueryParametersAreAllKept) {
  auto t = api::ParseTarget("/v1/vms?label=env%3Dprod&state=running&label=team=a");
  ASSERT_TRUE(t);
  EXPECT_EQ(api::QueryAll(*t, "label"), (std::vector<std::string>{"env=prod", "team=a"}));
  EXPECT_EQ(api::QueryAll(*t, "state"), (std::vector<std::string>{"running"}));
}

}  // namespace
}  // namespace hearth
