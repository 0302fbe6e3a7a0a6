#include "config/tree.hpp"

namespace knock::config {

Value Value::string(std::string text, Location where) {
  Value v;
  v.kind_ = Kind::String;
  v.text_ = std::move(text);
  v.where_ = std::move(where);
  return v;
}

Value Value::object(Location where) {
  Value v;
  v.kind_ = Kind::Object;
  v.where_ = std::move(where);
  return v;
}

Value Value::null(Location where) {
  Value v = string(std::string(), std::move(where));
  v.null_ = true;
  return v;
}

Value Value::array(Location where) {
  Value v;
  v.kind_ = Kind::Array;
  v.where_ = std::move(where);
  return v;
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : members_)
    if (k == key) return &v;
  return nullptr;
}

Value* Value::find(std::string_view key) {
  for (auto& [k, v] : members_)
    if (k == key) return &v;
  return nullptr;
}

std::vector<const Value*> Value::all(std::string_view key) const {
  std::vector<const Value*> out;
  const Value* v = find(key);
  if (v == nullptr) return out;
  if (v->is_array()) {
    for (const auto& item : v->items_) out.push_back(&item);
  } else {
    out.push_back(v);
  }
  return out;
}

std::optional<std::string> Value::scalar(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array()) {
    const Location& second = v->items_.size() > 1 ? v->items_[1].where() : v->where();
    throw ConfigError(second, "'" + std::string(key) + "' is given " + std::to_string(v->items_.size()) +
                                  " times; it takes one value");
  }
  if (v->is_object()) throw ConfigError(v->where(), "'" + std::string(key) + "' must be a value, not a block");
  return v->text_;
}

Location Value::where_of(std::string_view key) const {
  const Value* v = find(key);
  return v != nullptr ? v->where() : where_;
}

}  // namespace knock::config
