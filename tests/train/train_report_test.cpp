// train_log.csv and loss.svg: the CSV line for line, the SVG well-formed with one point per step (thinned past
// 2,000), the eval series when there is one, and an unwritable path named in the error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"
#include "train/train_report.h"

namespace wick::test {
namespace {

std::vector<StepReport> history(int64_t n, bool with_eval) {
  std::vector<StepReport> out;
  for (int64_t s = 1; s <= n; ++s) {
    StepReport r{.step = s, .total_steps = n, .epoch = (s - 1) / 3, .loss = 2.0 / double(s), .lr = 1e-3,
                 .grad_norm = 0.5, .tokens = 100, .seconds = 0.25};
    if (with_eval && s % 2 == 0) r.eval_loss = 3.0 / double(s);
    out.push_back(r);
  }
  return out;
}

// Every opening tag has its closing tag in order (the SVG is plain XML without comments or CDATA). A hand scan,
// not std::regex: libstdc++'s regex recurses per character and overflows the stack on a 2,000-point attribute.
bool balanced(const std::string& xml) {
  std::vector<std::string> open;
  for (size_t at = xml.find('<'); at != std::string::npos; at = xml.find('<', at + 1)) {
    const size_t end = xml.find('>', at);
    if (end == std::string::npos) return false;
    const bool closing = xml[at + 1] == '/';
    const size_t name_begin = at + 1 + (closing ? 1 : 0);
    size_t name_end = name_begin;
    while (name_end < end && std::islower(static_cast<unsigned char>(xml[name_end]))) ++name_end;
    if (name_end == name_begin) {
      if (xml[at + 1] == '?') continue;  // the XML declaration
      return false;
    }
    const std::string name = xml.substr(name_begin, name_end - name_begin);
    if (xml[end - 1] == '/') continue;  // self-closing
    if (closing) {
      if (open.empty() || open.back() != name) return false;
      open.pop_back();
    } else {
      open.push_back(name);
    }
  }
  return open.empty();
}

// Points of each polyline, in order (an "x,y" pair per point).
std::vector<size_t> polyline_points(const std::string& svg) {
  std::vector<size_t> out;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) {
    const size_t begin = svg.find("points=\"", at) + 8;
    const std::string pts = svg.substr(begin, svg.find('"', begin) - begin);
    out.push_back(size_t(std::count(pts.begin(), pts.end(), ',')));
  }
  return out;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(TrainReport, CsvHoldsEveryStep) {
  const auto dir = temp_dir("report");
  auto h = history(3, true);
  h[0].loss = 2.718281828459045;  // nine significant digits
  h[0].lr = 1.5e-4;
  h[2].seconds = 0;  // no time measured: 0 tokens/s rather than inf
  write_train_log(dir / "train_log.csv", h);
  EXPECT_EQ(read_file(dir / "train_log.csv"),
            "step,epoch,loss,lr,grad_norm,tokens,seconds,tokens_per_s,eval_loss\n"
            "1,0,2.71828183,0.00015,0.5,100,0.25,400,\n"
            "2,0,1,0.001,0.5,100,0.25,400,1.5\n"
            "3,0,0.666666667,0.001,0.5,100,0,0,\n");
  EXPECT_FALSE(std::filesystem::exists(dir / "train_log.csv.tmp"));
}

TEST(TrainReport, SvgIsWellFormedWithBothSeries) {
  const auto dir = temp_dir("report");
  write_loss_svg(dir / "loss.svg", history(7, true));
  const std::string svg = read_file(dir / "loss.svg");
  EXPECT_TRUE(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_TRUE(balanced(svg));
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("href"), std::string::npos) << "self-contained: nothing fetched";
  for (const char* text : {"optimizer step", ">loss<", "train loss", "eval loss"})
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{7, 3})) << "the train loss per step, then the 3 evals";
  EXPECT_EQ(count_of(svg, "<circle"), 3u) << "one point per eval";
  EXPECT_FALSE(std::filesystem::exists(dir / "loss.svg.tmp"));
}

TEST(TrainReport, SvgOfOneStepWithoutEval) {
  const auto dir = temp_dir("report");
  write_loss_svg(dir / "one.svg", history(1, false));
  const std::string one = read_file(dir / "one.svg");
  EXPECT_TRUE(balanced(one));
  EXPECT_EQ(polyline_points(one), (std::vector<size_t>{1}));
  EXPECT_EQ(one.find("eval loss"), std::string::npos);
  EXPECT_EQ(one.find("<circle"), std::string::npos);
  EXPECT_EQ(one.find("nan"), std::string::npos);
  EXPECT_EQ(one.find("inf"), std::string::npos);
  // A flat curve still gets distinct, round loss ticks (2 ± 10%: 1.8 ... 2.2), and step 1 is a whole number.
  EXPECT_NE(one.find(">1.8</text>"), std::string::npos) << one;
  EXPECT_NE(one.find(">2.2</text>"), std::string::npos) << one;
  EXPECT_NE(one.find(">1</text>"), std::string::npos) << one;
}

TEST(TrainReport, LongRunsAreThinnedAndNonFiniteLossesSkipped) {
  const auto dir = temp_dir("report");
  auto h = history(10000, true);
  h[5].loss = NAN;
  h[6].loss = INFINITY;
  h[7].eval_loss = NAN;
  write_loss_svg(dir / "loss.svg", h);
  const std::string svg = read_file(dir / "loss.svg");
  EXPECT_TRUE(balanced(svg));
  const std::vector<size_t> points = polyline_points(svg);
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[0], 2000u) << "train loss: 9,998 finite steps thinned to 2,000";
  EXPECT_EQ(points[1], 2000u) << "eval loss: 4,999 finite evals thinned to 2,000";
  EXPECT_EQ(count_of(svg, "<circle"), 2000u);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);

  auto all_nan = history(3, false);
  for (StepReport& r : all_nan) r.loss = NAN;
  write_loss_svg(dir / "nan.svg", all_nan);
  const std::string empty = read_file(dir / "nan.svg");
  EXPECT_TRUE(balanced(empty));
  EXPECT_TRUE(polyline_points(empty).empty());
  EXPECT_EQ(empty.find("nan"), std::string::npos);
}

TEST(TrainReport, UnwritablePathIsNamed) {
  EXPECT_WICK_ERROR(write_train_log("/proc/wick/train_log.csv", history(1, false)), ErrorKind::bad_input,
                    "/proc/wick/train_log.csv");
  EXPECT_WICK_ERROR(write_loss_svg("/proc/wick/loss.svg", history(1, false)), ErrorKind::bad_input, "/proc/wick/loss.svg");
}

}  // namespace
}  // namespace wick::test
