#include "tokenizer/tokenizer_json.h"

#include "core/json_util.h"

namespace wick::tok {

namespace {

using nlohmann::json;

// A SAX handler for nlohmann's parser: every event goes to nlohmann's own tree builder except those of the top-level
// "model" object's "vocab" object and "merges" array, which append to VocabAndMerges instead. Depths count the
// containers open: the root object is 1, "model" 2, the lists 3, a merge pair 4.
class Reader {
 public:
  explicit Reader(TokenizerJson& out) : out_(out), tree_(out.tree) {}

  bool null() { return scalar(Scalar::other) || tree_.null(); }
  bool boolean(bool v) { return scalar(Scalar::other) || tree_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return scalar(Scalar::integer, v) || tree_.number_integer(v); }
  // An id past INT64_MAX wraps to a negative one, as json::get<int64_t> gives it, and is then out of range.
  bool number_unsigned(json::number_unsigned_t v) {
    return scalar(Scalar::integer, int64_t(v)) || tree_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return scalar(Scalar::other) || tree_.number_float(v, s);
  }
  bool string(json::string_t& v) { return scalar(Scalar::string, 0, v) || tree_.string(v); }
  bool binary(json::binary_t& v) { return scalar(Scalar::other) || tree_.binary(v); }

  bool start_object(size_t size) {
    ++depth_;
    if (streaming()) return open_in_list(false);
    if (held_ == List::vocab) {  // the "vocab" object itself: stream it
      held_ = List::none;
      list_ = List::vocab;
      out_.lists.vocab.emplace();
      return true;
    }
    release_key();
    if (depth_ == 2 && model_key_) in_model_ = true;
    return tree_.start_object(size);
  }
  bool end_object() {
    --depth_;
    if (streaming()) {
      if (depth_ == 2) list_ = List::none;  // the end of "vocab"
      return true;
    }
    if (depth_ == 1) in_model_ = false;
    return tree_.end_object();
  }
  bool start_array(size_t size) {
    ++depth_;
    if (streaming()) return open_in_list(true);
    if (held_ == List::merges) {  // the "merges" array itself: stream it
      held_ = List::none;
      list_ = List::merges;
      out_.lists.merges.emplace();
      return true;
    }
    release_key();
    return tree_.start_array(size);
  }
  bool end_array() {
    --depth_;
    if (streaming()) {
      if (depth_ == 2) list_ = List::none;  // the end of "merges"
      else if (depth_ == 3 && list_ == List::merges) close_merge();
      return true;
    }
    return tree_.end_array();
  }

  bool key(json::string_t& k) {
    if (streaming()) {
      if (list_ == List::vocab && depth_ == 3) {  // a vocab token; its id is the next value
        token_.begin = out_.lists.text.size();
        out_.lists.text += k;
        token_.end = out_.lists.text.size();
      }
      return true;
    }
    if (depth_ == 1) {
      model_key_ = k == "model";
      if (model_key_) out_.lists = {};  // a "model" written twice: the last one counts
    } else if (depth_ == 2 && in_model_ && (k == "vocab" || k == "merges")) {
      // Held until its value shows whether it streams; either way it replaces an earlier list of the same name.
      held_ = k == "vocab" ? List::vocab : List::merges;
      if (held_ == List::vocab) out_.lists.vocab.reset();
      else out_.lists.merges.reset();
      return true;
    }
    return tree_.key(k);
  }

  template <class Exception>
  bool parse_error(size_t position, const std::string& last_token, const Exception& e) {
    return tree_.parse_error(position, last_token, e);
  }

 private:
  enum class List { none, vocab, merges };
  enum class Scalar { integer, string, other };

  bool streaming() const { return list_ != List::none; }

  // A "vocab"/"merges" key whose value is not streamed reaches the tree after all.
  void release_key() {
    if (held_ == List::none) return;
    std::string k = held_ == List::vocab ? "vocab" : "merges";
    held_ = List::none;
    tree_.key(k);
  }

  // A scalar value: true when it went into a list (or was skipped inside one), false when it is for the tree.
  bool scalar(Scalar kind, int64_t integer = 0, std::string_view text = {}) {
    if (!streaming()) {
      release_key();
      return false;
    }
    VocabAndMerges& lists = out_.lists;
    if (list_ == List::vocab) {
      if (depth_ == 3) lists.vocab->push_back({token_.begin, token_.end, integer, kind == Scalar::integer});
      return true;
    }
    using Form = VocabAndMerges::Merge::Form;
    if (depth_ == 3) {  // a whole merge: "a b", or anything else but an array
      VocabAndMerges::Merge m;
      if (kind == Scalar::string) {
        m = {Form::line, lists.text.size(), 0, lists.text.size() + text.size()};
        lists.text += text;
      }
      lists.merges->push_back(m);
    } else if (depth_ == 4) {  // one side of a pair
      VocabAndMerges::Merge& m = lists.merges->back();
      if (kind != Scalar::string || pair_sides_ >= 2) m.form = Form::other;
      if (m.form == Form::pair) {
        lists.text += text;
        (pair_sides_ == 0 ? m.split : m.end) = lists.text.size();
      }
      ++pair_sides_;
    }
    return true;
  }

  // An object or array opened inside a list: a merge's pair when it is an array directly in "merges"; anything
  // else makes the entry holding it malformed (its contents are skipped).
  bool open_in_list(bool array) {
    using Form = VocabAndMerges::Merge::Form;
    VocabAndMerges& lists = out_.lists;
    if (list_ == List::vocab) {
      if (depth_ == 4) lists.vocab->push_back({token_.begin, token_.end, 0, false});
    } else if (depth_ == 4) {
      const size_t here = lists.text.size();
      lists.merges->push_back({array ? Form::pair : Form::other, here, here, here});
      pair_sides_ = 0;
    } else if (depth_ == 5) {
      lists.merges->back().form = Form::other;
    }
    return true;
  }
  // The merge entry just opened at depth 4 as a container: a pair of two strings, or malformed.
  void close_merge() {
    VocabAndMerges::Merge& m = out_.lists.merges->back();
    if (m.form == VocabAndMerges::Merge::Form::pair && pair_sides_ != 2) m.form = VocabAndMerges::Merge::Form::other;
  }

  TokenizerJson& out_;
  nlohmann::detail::json_sax_dom_parser<json> tree_;  // nlohmann's own builder, as json::parse uses it
  size_t depth_ = 0;
  bool model_key_ = false;  // the last top-level key was "model"
  bool in_model_ = false;   // inside the top-level "model" object (meaningful at depth 2)
  List held_ = List::none;  // a "vocab" or "merges" key of "model" waiting for its value
  List list_ = List::none;  // the list being streamed
  VocabAndMerges::Token token_;  // the vocab key waiting for its id
  int pair_sides_ = 0;           // strings seen in the merge pair being read
};

}  // namespace

TokenizerJson read_tokenizer_json(std::string_view text, const std::string& origin) {
  TokenizerJson out;
  try {
    Reader reader(out);
    json::sax_parse(text.begin(), text.end(), &reader);
  } catch (const json::exception&) {
    fail_parsing_json(origin);
  }
  // A key written twice keeps its last value: a list streamed after a tree value of the same name replaces it.
  if (out.tree.is_object()) {
    const auto model = out.tree.find("model");
    if (model != out.tree.end() && model->is_object()) {
      if (out.lists.vocab) model->erase("vocab");
      if (out.lists.merges) model->erase("merges");
    }
  }
  return out;
}

}  // namespace wick::tok
