// EscapeText: what a guest's bytes look like once they may reach an event, a log or a terminal.
#include "common/text.h"

#include <gtest/gtest.h>

#include <string>

namespace hearth {
namespace {

// True when no byte of `s` is a C0 control or DEL (what a terminal acts on).
bool NoControlBytes(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

TEST(EscapeTextTest, PrintableTextStaysAsItIs) {
  EXPECT_EQ(EscapeText("web-1 exited: code 3 (ok) \\ grüße, 日本, 🙂"),
            "web-1 exited: code 3 (ok) \\ grüße, 日本, 🙂");
  EXPECT_EQ(EscapeText(""), "");
}

TEST(EscapeTextTest, ControlCharactersBecomeVisible) {
  EXPECT_EQ(EscapeText("\x1b[2J\x1b]0;pwned\x07red\x1b[31m!"),
            "\\x1b[2J\\x1b]0;pwned\\x07red\\x1b[31m!");
  EXPECT_EQ(EscapeText("a\nb\rc\td\x7f" + std::string(1, '\0')), "a\\nb\\rc\\td\\x7f\\x00");
  // C1 controls as UTF-8 (U+009B is CSI, U+0085 NEL) and a right-to-left override.
  EXPECT_EQ(EscapeText("\xc2\x9b"
                       "2J \xc2\x85 x\xe2\x80\xaey"),
            "\\u009b2J \\u0085 x\\u202ey");
}

TEST(EscapeTextTest, NewlinesAndTabsCanBeKept) {
  EXPECT_EQ(EscapeText("line 1\n\tline 2\r\n\x1b[0m", {.keep_newlines = true}),
            "line 1\n\tline 2\\r\n\\x1b[0m");
}

TEST(EscapeTextTest, InvalidUtf8BecomesHexSoTheResultIsValidUtf8) {
  EXPECT_EQ(EscapeText("a\xff"
                       "b"),
            "a\\xffb");
  EXPECT_EQ(EscapeText("\xc0\xaf"), "\\xc0\\xaf") << "overlong '/'";
  EXPECT_EQ(EscapeText("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate";
  EXPECT_EQ(EscapeText("\xe6\x97"), "\\xe6\\x97") << "a sequence cut short";
  EXPECT_EQ(EscapeText("\x80x"), "\\x80x") << "a stray continuation byte";
  EXPECT_EQ(EscapeText("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "above U+10FFFF";
}

TEST(EscapeTextTest, LongTextIsCutAtACharacterWithAMarker) {
  std::string line(10 << 20, 'a');  // 10 MB, one line
  std::string out = EscapeText(line, {.max_bytes = 200});
  EXPECT_LE(out.size(), 200u);
  EXPECT_EQ(out, std::string(165, 'a') + "...[10485595 bytes cut]");
  // Escapes grow the text: the bound is on the result, and no escape or character is split.
  std::string escapes(1000, '\x1b');
  out = EscapeText(escapes, {.max_bytes = 100});
  EXPECT_LE(out.size(), 100u);
  EXPECT_EQ(out.find("\\x1b"), 0u);
  size_t marker = out.find("...[");
  ASSERT_NE(marker, std::string::npos);
  EXPECT_EQ(marker % 4, 0u) << out;
  EXPECT_TRUE(NoControlBytes(out));
  std::string wide;
  for (int i = 0; i < 100; ++i) wide += "日";
  out = EscapeText(wide, {.max_bytes = 64});
  EXPECT_LE(out.size(), 64u);
  EXPECT_EQ(out.find("...["), 27u) << "nine whole characters, then the marker: " << out;
  // Text that fits exactly is not cut.
  EXPECT_EQ(EscapeText(std::string(64, 'b'), {.max_bytes = 64}), std::string(64, 'b'));
}

TEST(EscapeTextTest, EveryByteValueComesOutFreeOfControls) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string out = EscapeText(all + all);
  EXPECT_TRUE(NoControlBytes(out));
  EXPECT_EQ(out.find('\xc2'), std::string::npos) << "no raw C1 from the stray bytes";
}

}  // namespace
}  // namespace hearth
