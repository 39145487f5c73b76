#include "net/conntrack.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

#include "net/host_networks.h"

namespace hearth::net {
namespace {

bool IsLocal(uint32_t address, const std::vector<uint32_t>& local) {
  return (address >> 24) == 127 || std::find(local.begin(), local.end(), address) != local.end();
}

// The published UDP port a flow to `dst`:`dport` hits, if any.
const Publish* UdpPublishFor(const RuleSet& rules, uint32_t dst, int dport) {
  for (const Publish& p : rules.publish) {
    if (p.mapping.protocol != Protocol::kUdp || p.mapping.host_port != dport) continue;
    if (p.mapping.host_ip.empty() || ParseIpv4(p.mapping.host_ip) == dst) return &p;
  }
  return nullptr;
}

// ---- ctnetlink ----

struct Attr {
  uint16_t type = 0;
  std::string_view payload;
  std::string_view whole;  // header, payload and padding as received
};

std::vector<Attr> Attrs(std::string_view data) {
  std::vector<Attr> out;
  while (data.size() >= NLA_HDRLEN) {
    nlattr a;
    std::memcpy(&a, data.data(), sizeof(a));
    if (a.nla_len < NLA_HDRLEN || a.nla_len > data.size()) break;
    out.push_back({static_cast<uint16_t>(a.nla_type & NLA_TYPE_MASK),
                   data.substr(NLA_HDRLEN, a.nla_len - NLA_HDRLEN), data.substr(0, a.nla_len)});
    data.remove_prefix(std::min<size_t>(data.size(), NLA_ALIGN(a.nla_len)));
  }
  return out;
}

template <class T>
T Read(std::string_view payload) {
  T v{};
  std::memcpy(&v, payload.data(), std::min(sizeof(v), payload.size()));
  return v;
}

struct Tuple {
  int protocol = 0;
  uint32_t src = 0, dst = 0;
  int sport = 0, dport = 0;
};

std::optional<Tuple> ParseTuple(std::string_view nested) {
  Tuple t;
  bool ip = false;
  for (const Attr& a : Attrs(nested)) {
    if (a.type == CTA_TUPLE_IP) {
      for (const Attr& b : Attrs(a.payload)) {
        if (b.type == CTA_IP_V4_SRC) t.src = ntohl(Read<uint32_t>(b.payload)), ip = true;
        if (b.type == CTA_IP_V4_DST) t.dst = ntohl(Read<uint32_t>(b.payload));
      }
    } else if (a.type == CTA_TUPLE_PROTO) {
      for (const Attr& b : Attrs(a.payload)) {
        if (b.type == CTA_PROTO_NUM) t.protocol = Read<uint8_t>(b.payload);
        if (b.type == CTA_PROTO_SRC_PORT) t.sport = ntohs(Read<uint16_t>(b.payload));
        if (b.type == CTA_PROTO_DST_PORT) t.dport = ntohs(Read<uint16_t>(b.payload));
      }
    }
  }
  if (!ip) return std::nullopt;
  return t;
}

// A flow from one ctnetlink message's attributes (after its nfgenmsg).
std::optional<ConntrackFlow> ParseFlow(std::string_view attrs) {
  std::optional<Tuple> orig, reply;
  std::string_view raw;
  for (const Attr& a : Attrs(attrs)) {
    if (a.type == CTA_TUPLE_ORIG) orig = ParseTuple(a.payload), raw = a.whole;
    if (a.type == CTA_TUPLE_REPLY) reply = ParseTuple(a.payload);
  }
  if (!orig || !reply) return std::nullopt;
  return ConntrackFlow{orig->protocol, orig->src,  orig->dst,    orig->sport,
                       orig->dport,    reply->src, reply->sport, std::string(raw)};
}

class CtSocket {
 public:
  CtSocket() : fd_(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER)) {
    timeval timeout{2, 0};
    if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~CtSocket() {
    if (fd_ >= 0) close(fd_);
  }
  CtSocket(const CtSocket&) = delete;
  CtSocket& operator=(const CtSocket&) = delete;

  // Sends a ctnetlink request of `type` with `flags` and `attrs`; calls `on_message` with each
  // answer's attributes until the dump ends or the ack comes.
  template <class F>
  Status Request(uint16_t type, uint16_t flags, std::string_view attrs, F on_message) {
    if (fd_ < 0) return Failed("socket", errno);
    std::string msg(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)), '\0');
    msg += attrs;
    nlmsghdr h{static_cast<uint32_t>(msg.size()),
               static_cast<uint16_t>((NFNL_SUBSYS_CTNETLINK << 8) | type),
               static_cast<uint16_t>(NLM_F_REQUEST | flags), ++seq_, 0};
    nfgenmsg g{AF_INET, NFNETLINK_V0, 0};
    std::memcpy(msg.data(), &h, sizeof(h));
    std::memcpy(msg.data() + NLMSG_HDRLEN, &g, sizeof(g));
    if (send(fd_, msg.data(), msg.size(), 0) < 0) return Failed("send", errno);
    std::string buf(1 << 16, '\0');
    for (;;) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) return Failed("recv", errno);
      for (auto* m = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(m, n);
           m = NLMSG_NEXT(m, n)) {
        if (m->nlmsg_seq != seq_) continue;
        if (m->nlmsg_type == NLMSG_DONE) return Ok();
        if (m->nlmsg_type == NLMSG_ERROR) {
          int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(m))->error;
          return err == 0 ? Ok() : Failed("request", err);
        }
        size_t skip = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
        if (m->nlmsg_len >= skip) {
          on_message(std::string_view(reinterpret_cast<char*>(m) + skip, m->nlmsg_len - skip));
        }
      }
    }
  }

 private:
  static tl::unexpected<Error> Failed(std::string_view what, int err) {
    return Fail(err == ENOENT ? Code::kNotFound : Code::kUnavailable,
                fmt::format("conntrack (ctnetlink) {}: {}; is nf_conntrack_netlink available?",
                            what, std::strerror(err)));
  }
  int fd_;
  uint32_t seq_ = 0;
};

}  // namespace

std::vector<size_t> StaleUdpFlows(const std::vector<ConntrackFlow>& flows, const RuleSet& rules,
                                  const std::vector<uint32_t>& local) {
  auto pool = ParseIpv4Network(rules.pool_cidr);
  std::vector<size_t> out;
  for (size_t i = 0; i < flows.size(); ++i) {
    const ConntrackFlow& f = flows[i];
    if (f.protocol != IPPROTO_UDP || !IsLocal(f.orig_dst, local)) continue;
    if (const Publish* p = UdpPublishFor(rules, f.orig_dst, f.orig_dport)) {
      bool right = ParseIpv4(p->guest_ip) == f.reply_src && p->mapping.guest_port == f.reply_sport;
      if (!right) out.push_back(i);
    } else if (pool && pool->Contains(f.reply_src) && f.reply_src != f.orig_dst) {
      out.push_back(i);  // DNATed into the pool by a port no longer published
    }
  }
  return out;
}

Result<std::vector<ConntrackFlow>> ListConntrackFlows() {
  CtSocket ct;
  std::vector<ConntrackFlow> flows;
  auto s = ct.Request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, {}, [&](std::string_view attrs) {
    if (auto f = ParseFlow(attrs)) flows.push_back(std::move(*f));
  });
  if (!s) return Fail(s.error());
  return flows;
}

Status DeleteConntrackFlow(const ConntrackFlow& flow) {
  CtSocket ct;
  auto s = ct.Request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, flow.tuple, [](std::string_view) {});
  if (!s && s.error().code == Code::kNotFound) return Ok();
  return s;
}

Result<int> RemoveStaleUdpFlows(const RuleSet& rules) {
  auto flows = ListConntrackFlows();
  if (!flows) return Fail(flows.error());
  auto networks = HostIpv4Networks();
  if (!networks) return Fail(networks.error());
  std::vector<uint32_t> local;
  for (const auto& [_, network] : *networks) local.push_back(network.base);
  int deleted = 0;
  for (size_t i : StaleUdpFlows(*flows, rules, local)) {
    if (auto s = DeleteConntrackFlow((*flows)[i]); !s) return Fail(s.error());
    ++deleted;
  }
  return deleted;
}

}  // namespace hearth::net
