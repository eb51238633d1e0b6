// What a training run leaves beside its adapter for a person to read: train_log.csv (one line per optimizer step)
// and loss.svg (the train and eval loss curves, a self-contained SVG any browser shows).
#pragma once

#include <filesystem>
#include <vector>

#include "wick/train.h"

namespace wick {

/// step,epoch,loss,lr,grad_norm,tokens,seconds,tokens_per_s,eval_loss — one line per step (eval_loss empty where
/// the step did not evaluate), numbers with enough digits to read back exactly (%.9g). Written to a temporary file
/// and renamed; bad_input naming the file when it cannot be written.
void write_train_log(const std::filesystem::path& csv, const std::vector<StepReport>& steps);

/// The loss per step as a line, the eval losses as points joined by a second line (each series at most 2,000
/// points: longer ones are thinned evenly), axes with round tick values, titles and a legend. Non-finite losses are
/// left out.
/// Written as write_train_log writes.
void write_loss_svg(const std::filesystem::path& svg, const std::vector<StepReport>& steps);

}  // namespace wick
