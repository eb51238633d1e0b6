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
    if (!f) fail(ErrorKind::bad_input, path.string() + ": cannot write");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(ErrorKind::bad_input, path.string() + ": cannot write (" + ec.message() + ")");
}

// Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them.
std::vector<double> ticks(double lo, double hi) {
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
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

std::string polyline(const std::vector<Point>& pts, const Frame& f, const char* colour) {
  std::string s = "<polyline fill=\"none\" stroke=\"" + std::string(colour) + "\" stroke-width=\"1.5\" points=\"";
  for (const Point& p : pts) s += num(f.x(p.step), "%.2f") + "," + num(f.y(p.loss), "%.2f") + " ";
  return s + "\"/>\n";
}

std::string axes(const Frame& f) {
  std::string s = "<rect x=\"" + num(f.x0) + "\" y=\"" + num(f.y0) + "\" width=\"" + num(f.w) + "\" height=\"" +
                  num(f.h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (double t : ticks(f.min_step, f.max_step)) {
    const std::string x = num(f.x(t), "%.2f");
    s += "<line x1=\"" + x + "\" y1=\"" + num(f.y0 + f.h) + "\" x2=\"" + x + "\" y2=\"" + num(f.y0 + f.h + 5) +
         "\" stroke=\"#444\"/><text x=\"" + x + "\" y=\"" + num(f.y0 + f.h + 18) + "\" text-anchor=\"middle\">" +
         num(t, "%g") + "</text>\n";
  }
  for (double t : ticks(f.min_loss, f.max_loss)) {
    const std::string y = num(f.y(t), "%.2f");
    s += "<line x1=\"" + num(f.x0 - 5) + "\" y1=\"" + y + "\" x2=\"" + num(f.x0 + f.w) + "\" y2=\"" + y +
         "\" stroke=\"#ddd\"/><text x=\"" + num(f.x0 - 8) + "\" y=\"" + y + "\" text-anchor=\"end\" dy=\"4\">" +
         num(t, "%g") + "</text>\n";
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
  const size_t stride = std::max<size_t>(1, (steps.size() + 1999) / 2000);
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepReport& r = steps[i];
    if (std::isfinite(r.loss) && (i % stride == 0 || i + 1 == steps.size())) train.push_back({double(r.step), r.loss});
    if (r.eval_loss && std::isfinite(*r.eval_loss)) eval.push_back({double(r.step), *r.eval_loss});
  }
  Frame f{.min_step = 0, .max_step = 1, .min_loss = 0, .max_loss = 1};
  bool first = true;
  for (const auto* series : {&train, &eval})
    for (const Point& p : *series) {
      f.min_step = first ? p.step : std::min(f.min_step, p.step), f.max_step = first ? p.step : std::max(f.max_step, p.step);
      f.min_loss = first ? p.loss : std::min(f.min_loss, p.loss), f.max_loss = first ? p.loss : std::max(f.max_loss, p.loss);
      first = false;
    }
  if (f.max_step - f.min_step < 1) f.min_step -= 0.5, f.max_step += 0.5;
  const double pad = std::max((f.max_loss - f.min_loss) * 0.05, 1e-6 * std::max(1.0, std::fabs(f.max_loss)));
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
  s += "<line x1=\"480\" y1=\"55\" x2=\"505\" y2=\"55\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"510\" y=\"59\">"
       "train loss</text>\n";
  if (!eval.empty())
    s += "<line x1=\"480\" y1=\"73\" x2=\"505\" y2=\"73\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"510\" "
         "y=\"77\">eval loss</text>\n";
  write_atomically(svg, s + "</svg>\n");
}

}  // namespace wick
