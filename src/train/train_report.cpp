#include "train/train_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <system_error>

#include "wick/error.h"

namespace wick {

namespace fs = std::filesystem;

namespace {

std::string num(double v, const char* format = "%.9g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f << text;
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      fail(ErrorKind::bad_input, path.string() + ": cannot write");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail(ErrorKind::bad_input, path.string() + ": cannot write (" + ec.message() + ")");
  }
}

// Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them, and at least `min_step`
// (1 on the step axis: there are no half steps); labels with as many decimals as the step needs.
struct Ticks {
  std::vector<double> at;
  int decimals = 0;
  std::string label(double t) const { return num(t, ("%." + std::to_string(decimals) + "f").c_str()); }
};

Ticks ticks(double lo, double hi, double min_step = 0) {
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw))), r = raw / mag;
  const double step = std::max(min_step, r < 1.5 ? mag : r < 3.5 ? 2 * mag : r < 7.5 ? 5 * mag : 10 * mag);
  Ticks out{.at = {}, .decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)))};
  for (double k = std::ceil(lo / step); k * step <= hi + step * 1e-9; ++k) out.at.push_back(k == 0 ? 0 : k * step);
  return out;
}

struct Point {
  double step, loss;
};

// Plot area and the data range it maps.
struct Frame {
  double x0 = 70, y0 = 40, w = 560, h = 300;
  double min_step, max_step, min_loss, max_loss;
  double x(double step) const { return x0 + (step - min_step) / (max_step - min_step) * w; }
  double y(double loss) const { return y0 + h - (loss - min_loss) / (max_loss - min_loss) * h; }
};

// At most kMaxPoints of `pts`, evenly spaced, the first and the last kept: a browser draws a long run's curve
// as fast as a short one's.
constexpr size_t kMaxPoints = 2000;
std::vector<Point> thinned(const std::vector<Point>& pts) {
  if (pts.size() <= kMaxPoints) return pts;
  std::vector<Point> out(kMaxPoints);
  for (size_t k = 0; k < kMaxPoints; ++k) out[k] = pts[k * (pts.size() - 1) / (kMaxPoints - 1)];
  return out;
}

std::string polyline(const std::vector<Point>& pts, const Frame& f, const char* colour) {
  std::string s = "<polyline fill=\"none\" stroke=\"" + std::string(colour) + "\" stroke-width=\"1.5\" points=\"";
  for (const Point& p : pts) s += num(f.x(p.step), "%.2f") + "," + num(f.y(p.loss), "%.2f") + " ";
  return s + "\"/>\n";
}

std::string axes(const Frame& f) {
  std::string s = "<rect x=\"" + num(f.x0) + "\" y=\"" + num(f.y0) + "\" width=\"" + num(f.w) + "\" height=\"" +
                  num(f.h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  const Ticks xs = ticks(f.min_step, f.max_step, 1), ys = ticks(f.min_loss, f.max_loss);
  for (double t : xs.at) {
    const std::string x = num(f.x(t), "%.2f");
    s += "<line x1=\"" + x + "\" y1=\"" + num(f.y0 + f.h) + "\" x2=\"" + x + "\" y2=\"" + num(f.y0 + f.h + 5) +
         "\" stroke=\"#444\"/><text x=\"" + x + "\" y=\"" + num(f.y0 + f.h + 18) + "\" text-anchor=\"middle\">" +
         xs.label(t) + "</text>\n";
  }
  for (double t : ys.at) {
    const std::string y = num(f.y(t), "%.2f");
    s += "<line x1=\"" + num(f.x0 - 5) + "\" y1=\"" + y + "\" x2=\"" + num(f.x0 + f.w) + "\" y2=\"" + y +
         "\" stroke=\"#ddd\"/><text x=\"" + num(f.x0 - 8) + "\" y=\"" + y + "\" text-anchor=\"end\" dy=\"4\">" +
         ys.label(t) + "</text>\n";
  }
  s += "<text x=\"" + num(f.x0 + f.w / 2) + "\" y=\"" + num(f.y0 + f.h + 38) +
       "\" text-anchor=\"middle\">optimizer step</text>\n";
  s += "<text transform=\"translate(18," + num(f.y0 + f.h / 2) + ") rotate(-90)\" text-anchor=\"middle\">loss</text>\n";
  return s;
}

}  // namespace

void write_train_log(const fs::path& csv, const std::vector<StepReport>& steps) {
  std::string text = "step,epoch,loss,lr,grad_norm,tokens,seconds,tokens_per_s,eval_loss\n";
  for (const StepReport& r : steps) {
    text += std::to_string(r.step) + "," + std::to_string(r.epoch) + "," + num(r.loss) + "," + num(r.lr) + "," +
            num(r.grad_norm) + "," + std::to_string(r.tokens) + "," + num(r.seconds) + "," +
            num(r.seconds > 0 ? double(r.tokens) / r.seconds : 0) + "," + (r.eval_loss ? num(*r.eval_loss) : "") + "\n";
  }
  write_atomically(csv, text);
}

void write_loss_svg(const fs::path& svg, const std::vector<StepReport>& steps) {
  std::vector<Point> train, eval;
  for (const StepReport& r : steps) {
    if (std::isfinite(r.loss)) train.push_back({double(r.step), r.loss});
    if (r.eval_loss && std::isfinite(*r.eval_loss)) eval.push_back({double(r.step), *r.eval_loss});
  }
  train = thinned(train), eval = thinned(eval);
  // The range of both series; an empty plot (every loss non-finite) shows [0, 1] on both axes.
  Frame f{.min_step = 0, .max_step = 1, .min_loss = 0, .max_loss = 1};
  if (!train.empty() || !eval.empty()) {
    f.min_step = f.min_loss = INFINITY, f.max_step = f.max_loss = -INFINITY;
    for (const auto* series : {&train, &eval})
      for (const Point& p : *series) {
        f.min_step = std::min(f.min_step, p.step), f.max_step = std::max(f.max_step, p.step);
        f.min_loss = std::min(f.min_loss, p.loss), f.max_loss = std::max(f.max_loss, p.loss);
      }
  }
  if (f.max_step - f.min_step < 1) f.min_step -= 0.5, f.max_step += 0.5;
  // 5% above and below; a flat curve (one step, a constant loss) gets ±10% of its value so its ticks differ.
  const double range = f.max_loss - f.min_loss, scale = std::max(1e-3, std::fabs(f.max_loss));
  const double pad = range > 1e-6 * scale ? range * 0.05 : 0.1 * scale;
  f.min_loss -= pad, f.max_loss += pad;

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"660\" height=\"400\" font-family=\"sans-serif\" "
                  "font-size=\"12\">\n<rect width=\"660\" height=\"400\" fill=\"white\"/>\n"
                  "<text x=\"330\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">wick train: loss per optimizer "
                  "step</text>\n";
  s += axes(f);
  if (!train.empty()) s += polyline(train, f, "#1f77b4");
  if (!eval.empty()) {
    s += polyline(eval, f, "#d62728");
    for (const Point& p : eval)
      s += "<circle cx=\"" + num(f.x(p.step), "%.2f") + "\" cy=\"" + num(f.y(p.loss), "%.2f") + "\" r=\"3\" fill=\"#d62728\"/>\n";
  }
  s += "<rect x=\"472\" y=\"44\" width=\"150\" height=\"" + std::string(eval.empty() ? "22" : "40") +
       "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n";
  s += "<line x1=\"480\" y1=\"55\" x2=\"505\" y2=\"55\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"510\" y=\"59\">"
       "train loss</text>\n";
  if (!eval.empty())
    s += "<line x1=\"480\" y1=\"73\" x2=\"505\" y2=\"73\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"510\" "
         "y=\"77\">eval loss</text>\n";
  write_atomically(svg, s + "</svg>\n");
}

}  // namespace wick
