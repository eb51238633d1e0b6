// train_log.csv and loss.svg: the CSV line for line, the SVG well-formed with one point per step (thinned past
// 2,000), the eval series when there is one, and an unwritable path named in the error.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
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

// Every opening tag has its closing tag in order (the SVG is plain XML without comments or CDATA).
bool balanced(const std::string& xml) {
  std::vector<std::string> open;
  const std::regex tag(R"(<(/?)([a-z]+)[^>]*?(/?)>)");
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    if (m[3] == "/") continue;
    if (m[1] == "/") {
      if (open.empty() || open.back() != m[2]) return false;
      open.pop_back();
    } else {
      open.push_back(m[2]);
    }
  }
  return open.empty();
}

size_t points_of_first_polyline(const std::string& svg) {
  const size_t at = svg.find("points=\"");
  const std::string pts = svg.substr(at + 8, svg.find('"', at + 8) - at - 8);
  return size_t(std::count(pts.begin(), pts.end(), ','));
}

TEST(TrainReport, CsvHoldsEveryStep) {
  const auto dir = temp_dir("report");
  write_train_log(dir / "train_log.csv", history(2, true));
  EXPECT_EQ(read_file(dir / "train_log.csv"),
            "step,epoch,loss,lr,grad_norm,tokens,seconds,tokens_per_s,eval_loss\n"
            "1,0,2,0.001,0.5,100,0.25,400,\n"
            "2,0,1,0.001,0.5,100,0.25,400,1.5\n");
}

TEST(TrainReport, SvgIsWellFormedWithBothSeries) {
  const auto dir = temp_dir("report");
  write_loss_svg(dir / "loss.svg", history(7, true));
  const std::string svg = read_file(dir / "loss.svg");
  EXPECT_TRUE(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_TRUE(balanced(svg));
  EXPECT_EQ(points_of_first_polyline(svg), 7u);
  EXPECT_NE(svg.find("eval loss"), std::string::npos);
  size_t circles = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) ++circles;
  EXPECT_EQ(circles, 3u) << "one point per eval";

  write_loss_svg(dir / "one.svg", history(1, false));
  const std::string one = read_file(dir / "one.svg");
  EXPECT_TRUE(balanced(one));
  EXPECT_EQ(one.find("eval loss"), std::string::npos);
  EXPECT_EQ(one.find("nan"), std::string::npos);
  EXPECT_EQ(one.find("inf"), std::string::npos);
}

TEST(TrainReport, LongRunsAreThinnedAndNonFiniteLossesSkipped) {
  const auto dir = temp_dir("report");
  auto h = history(10000, false);
  h[5].loss = NAN;
  h[6].loss = INFINITY;
  write_loss_svg(dir / "loss.svg", h);
  const std::string svg = read_file(dir / "loss.svg");
  EXPECT_TRUE(balanced(svg));
  EXPECT_LE(points_of_first_polyline(svg), 2001u);
  EXPECT_GE(points_of_first_polyline(svg), 1000u);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(TrainReport, UnwritablePathIsNamed) {
  EXPECT_WICK_ERROR(write_train_log("/proc/wick/train_log.csv", history(1, false)), ErrorKind::bad_input,
                    "/proc/wick/train_log.csv");
  EXPECT_WICK_ERROR(write_loss_svg("/proc/wick/loss.svg", history(1, false)), ErrorKind::bad_input, "/proc/wick/loss.svg");
}

}  // namespace
}  // namespace wick::test
