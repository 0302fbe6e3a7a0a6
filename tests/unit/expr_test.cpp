// The expression language: parsing, Perl's values and precedence, errors, and a comparison
// against perl itself for the manual's recipe expressions.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <regex>
#include <sstream>
#include <unistd.h>

#include "rules/expr.hpp"
#include "rules/state.hpp"

using namespace knock;
using namespace knock::rules;

namespace {
const bool kTz = [] {
  setenv("TZ", "UTC", 1);
  tzset();
  return true;
}();

Location here() { return Location{"test.conf", 7}; }

Vars sample_vars(std::uint32_t flag0 = 3, double time = 1709633100) {  // 2024-03-05 10:05:00 UTC
  codec::KnockValues kv;
  kv.set(codec::Field::Ip, 0xC6120001);  // 198.18.0.1
  kv.set(codec::Field::Port, 22);
  kv.set(codec::Field::Flag0, flag0);
  kv.set(codec::Field::Checksum, 36);
  return make_vars(kv, *IpAddress::parse("2001:db8::7"), time);
}

Scalar eval(const std::string& text, StateStore* state = nullptr, const Vars& vars = sample_vars()) {
  auto r = Expr::parse(text, here()).evaluate(vars, state);
  EXPECT_TRUE(r.ok) << text << ": " << r.error;
  return r.value;
}
std::string evs(const std::string& text, StateStore* state = nullptr) { return eval(text, state).str(); }
}  // namespace

TEST(Scalar, PerlConversions) {
  EXPECT_EQ(numify("198.18.0.1"), 198.18);
  EXPECT_EQ(numify(" 12abc"), 12);
  EXPECT_EQ(numify("0x10"), 0);
  EXPECT_EQ(numify(".5"), 0.5);
  EXPECT_EQ(numify("1e3"), 1000);
  EXPECT_EQ(numify("abc"), 0);
  EXPECT_EQ(numify("-"), 0);
  EXPECT_EQ(Scalar::number(0.1 + 0.2).str(), "0.3");
  EXPECT_EQ(Scalar::number(1.0 / 3).str(), "0.333333333333333");
  EXPECT_EQ(Scalar::number(1e15).str(), "1e+15");
  EXPECT_EQ(Scalar::integer(1000000000000000LL).str(), "1000000000000000");
  EXPECT_FALSE(Scalar().truthy());
  EXPECT_FALSE(Scalar::string("0").truthy());
  EXPECT_FALSE(Scalar::string("").truthy());
  EXPECT_TRUE(Scalar::string("0.0").truthy());
  EXPECT_TRUE(Scalar::string("00").truthy());
  EXPECT_FALSE(Scalar::integer(0).truthy());
}

TEST(Expr, FieldValues) {
  Vars v = sample_vars();
  EXPECT_EQ(v[Var::Ip].str(), "198.18.0.1");
  EXPECT_EQ(v[Var::LogIp].str(), "2001:db8::7");
  EXPECT_EQ(v[Var::Time].str(), "1709633100");
  EXPECT_EQ(v[Var::ThisYear].str(), "2024");
  EXPECT_EQ(v[Var::ThisMonth].str(), "3");
  EXPECT_EQ(v[Var::ThisDay].str(), "5");
  EXPECT_EQ(v[Var::ThisHour].str(), "10");
  EXPECT_EQ(v[Var::ThisMinute].str(), "5");
  EXPECT_FALSE(v[Var::Flag1].defined());  // not in the knock
  EXPECT_EQ(make_vars({}, IpAddress(), 1709633100.9)[Var::Time].str(), "1709633100");
  // IP6 and FAMILY: 6 with IP6, else 4 with IP, else LOGIP's family.
  EXPECT_FALSE(v[Var::Ip6].defined());
  EXPECT_EQ(v[Var::Family].str(), "4");
  codec::KnockValues kv;
  kv.set_ip6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});
  kv.set(codec::Field::Port, 22);
  const Vars w = make_vars(kv, *IpAddress::parse("198.18.0.1"), 0);
  EXPECT_EQ(w[Var::Ip6].str(), "2001:db8::2");
  EXPECT_FALSE(w[Var::Ip].defined());
  EXPECT_EQ(w[Var::Port].str(), "22");
  EXPECT_EQ(w[Var::Family].str(), "6");
  EXPECT_EQ(make_vars({}, *IpAddress::parse("2001:db8::7"), 0)[Var::Family].str(), "6");
  EXPECT_EQ(make_vars({}, *IpAddress::parse("198.18.0.7"), 0)[Var::Family].str(), "4");
  EXPECT_EQ(Expr::parse("FAMILY == 6 && IP6 eq '2001:db8::2'", here()).evaluate(w, nullptr).value.str(), "1");
  EXPECT_EQ(var_name(Var::Ip6), "IP6");
  EXPECT_EQ(var_from_name("FAMILY"), Var::Family);
}

TEST(Expr, ArithmeticAndPrecedence) {
  EXPECT_EQ(evs("1 + 2 * 3"), "7");
  EXPECT_EQ(evs("(1 + 2) * 3"), "9");
  EXPECT_EQ(evs("7 / 2"), "3.5");
  EXPECT_EQ(evs("-7 % 3"), "2");
  EXPECT_EQ(evs("7 % -3"), "-2");
  EXPECT_EQ(evs("10 - 2 - 3"), "5");
  EXPECT_EQ(evs("-2 * -3"), "6");
  EXPECT_EQ(evs("0.1 + 0.2"), "0.3");
  EXPECT_EQ(evs("TIME - 100"), "1709633000");
  EXPECT_EQ(evs("PORT == 22 && FLAG0 < 255"), "1");
  EXPECT_EQ(evs("PORT == 23"), "");
  EXPECT_EQ(evs("! 1"), "");
  EXPECT_EQ(evs("!0"), "1");
  EXPECT_EQ(evs("! ''"), "1");
  EXPECT_EQ(evs("0 || 5"), "5");
  EXPECT_EQ(evs("3 && 4"), "4");
  EXPECT_EQ(evs("0 && 4"), "0");
  EXPECT_EQ(evs("1 || 0 && 0"), "1");  // && binds tighter
  EXPECT_EQ(evs("not 0 and 0"), "0");  // (not 0) and 0: not binds tighter than and
  EXPECT_EQ(evs("0 or 2 and 3"), "3");
  EXPECT_EQ(evs("not 1 == 2"), "1");   // not is lower than ==
  EXPECT_EQ(evs("! 1 == 2"), "");      // ! is higher: ("" == 2)
  EXPECT_EQ(evs("IP eq '198.18.0.1'"), "1");
  EXPECT_EQ(evs("IP ne \"198.18.0.1\""), "");
  EXPECT_EQ(evs("IP == 198.18"), "1");  // numeric view of a dotted quad, as in Perl
  EXPECT_EQ(evs("1 ? 'a' : 'b'"), "a");
  EXPECT_EQ(evs("1; 2; 3"), "3");
  EXPECT_EQ(evs("'abc' lt 'abd'"), "1");
}

TEST(Expr, StateReadsAndWrites) {
  StateTree st;
  EXPECT_FALSE(eval("state(IP,visits,num)", &st).defined());
  EXPECT_EQ(evs("! state(IP,visits,num)", &st), "1");
  EXPECT_EQ(evs("state(IP,visits,num) < 1", &st), "1");
  EXPECT_EQ(evs("state(IP,visits,num)++", &st), "0");  // post-increment of undef gives 0
  EXPECT_EQ(st.get({"198.18.0.1", "visits", "num"}).str(), "1");
  EXPECT_EQ(evs("++state(IP,visits,num)", &st), "2");
  EXPECT_EQ(evs("state(IP,visits,num)--", &st), "2");
  EXPECT_EQ(evs("--state(IP,visits,num)", &st), "0");
  EXPECT_FALSE(eval("state(IP,x)--", &st).defined());  // post-decrement of undef gives undef
  EXPECT_EQ(st.get({"198.18.0.1", "x"}).str(), "-1");
  EXPECT_EQ(evs("state(IP,a) = 2; state(IP,b) = 3; state(IP,c) = state(IP,a) + state(IP,b)", &st), "5");
  EXPECT_EQ(st.get({"198.18.0.1", "c"}).str(), "5");
  EXPECT_EQ(evs("state(IP,c) += 10", &st), "15");
  EXPECT_EQ(evs("state(IP,c) -= 1", &st), "14");
  EXPECT_EQ(evs("state(LOGIP,uniqueval,THISHOUR,FLAG0)++", &st), "0");
  EXPECT_EQ(st.get({"2001:db8::7", "uniqueval", "10", "3"}).str(), "1");
  EXPECT_EQ(evs("state('a b', 1.50) = 'Az'; state('a b',1.5)++; state('a b',1.5)", &st), "Ba");
  EXPECT_EQ(evs("state(IP,a) = state(IP,b) = 9; state(IP,a)", &st), "9");
}

TEST(Expr, RuntimeErrorsDoNotThrow) {
  StateTree st;
  auto r = Expr::parse("state(IP,n) = 1; 1 / (FLAG0 - 3); state(IP,n) = 2", here()).evaluate(sample_vars(), &st);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "Illegal division by zero");
  EXPECT_EQ(st.get({"198.18.0.1", "n"}).str(), "1");  // what ran before stays, as with eval
  r = Expr::parse("5 % 0.5", here()).evaluate(sample_vars(), &st);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "Illegal modulus zero");
  r = Expr::parse("state(IP,n) = 1", here()).evaluate(sample_vars(), nullptr);
  EXPECT_FALSE(r.ok);
  StateTree tiny(StateLimits{2, 16, 256, 1024});
  r = Expr::parse("state(a,b,c) = 1", here()).evaluate(sample_vars(), &tiny);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("full"), std::string::npos);
}

TEST(Expr, SyntaxErrorsNameTheLineAndColumn) {
  auto expect_error = [](const std::string& text, const std::string& fragment) {
    try {
      Expr::parse(text, here());
      ADD_FAILURE() << "no error for " << text;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.where().str(), "test.conf:7") << text;
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << text << " -> " << e.what();
    }
  };
  expect_error("PORT == ", "column 9");
  expect_error("PORT == 22 &&", "expected a value");
  expect_error("PORT = 22", "only state(...) can be assigned");
  expect_error("(1 + 2", "expected ')'");
  expect_error("FOO == 1", "unknown name 'FOO'");
  expect_error("1 == 2 == 3", "do not chain");
  expect_error("state(IP,", "column 10");
  expect_error("state()", "expected a key");
  expect_error("1 $ 2", "column 3: unexpected character '$'");
  expect_error("'abc", "unterminated string");
  expect_error("\"a $x\"", "variables in strings");
  expect_error("PORT++", "apply only to state");
  expect_error("", "empty expression");
  expect_error("1 2", "column 3");
  expect_error(std::string(5000, '1'), "longer than");
  expect_error(std::string(100, '(') + "1" + std::string(100, ')'), "too deeply nested");
  expect_error(std::string(100, '!') + "1", "too deeply nested");
  std::string keys = "state(a";
  for (int i = 0; i < 20; ++i) keys += ",a";
  expect_error(keys + ")", "more than 16 keys");
  std::string sum = "1";
  for (int i = 0; i < 400; ++i) sum += "+1";
  expect_error(sum, "too deeply nested");
}

TEST(Expr, RenderFillsInFieldValues) {
  auto e = Expr::parse("state(IP,visits,prevtime) = TIME", here());
  EXPECT_EQ(e.render(sample_vars()), "state(198.18.0.1,visits,prevtime) = 1709633100");
  EXPECT_TRUE(e.writes_state());
  EXPECT_FALSE(Expr::parse("PORT == 22", here()).writes_state());
}

// ---- against perl itself ----

namespace {
struct PerlCase {
  std::string expr;
  std::uint32_t flag0;
  double time;
  std::vector<std::pair<std::vector<std::string>, std::string>> state;  // initial values
};

std::string perl_literal(const Scalar& s) {
  if (!s.defined()) return "undef";
  if (s.kind() == Scalar::Kind::Number) return s.str();
  return "'" + s.str() + "'";
}

// The original's own translation: fields inside state(...) become keys, state(...) a hash path.
std::string to_perl(const std::string& expr, const Vars& vars) {
  std::string out;
  std::regex state_re(R"(state\(([^)]*)\))");
  std::sregex_iterator it(expr.begin(), expr.end(), state_re), end;
  std::size_t copied = 0;
  std::string staged;
  for (; it != end; ++it) {
    staged += expr.substr(copied, static_cast<std::size_t>(it->position()) - copied);
    std::string path = "$S->";
    std::stringstream keys((*it)[1].str());
    std::string key;
    while (std::getline(keys, key, ',')) {
      key.erase(0, key.find_first_not_of(' '));
      key.erase(key.find_last_not_of(' ') + 1);
      auto v = var_from_name(key);
      path += "{'" + (v ? vars[*v].str() : key) + "'}";
    }
    staged += path;
    copied = static_cast<std::size_t>(it->position() + it->length());
  }
  staged += expr.substr(copied);
  std::regex word_re(R"(\b[A-Z][A-Z0-9]*\b)");
  std::sregex_iterator w(staged.begin(), staged.end(), word_re);
  copied = 0;
  for (; w != end; ++w) {
    auto v = var_from_name(w->str());
    if (!v) continue;
    out += staged.substr(copied, static_cast<std::size_t>(w->position()) - copied);
    out += perl_literal(vars[*v]);
    copied = static_cast<std::size_t>(w->position() + w->length());
  }
  out += staged.substr(copied);
  return out;
}

std::string describe(const EvalResult& r, const StateTree& st) {
  std::string s = !r.ok ? "E" : r.value.defined() ? "D:" + r.value.str() : "U";
  for (const auto& e : st.entries()) {
    s += " ";
    for (std::size_t i = 0; i < e.keys.size(); ++i) s += (i ? "/" : "") + e.keys[i];
    s += "=" + (e.value.defined() ? e.value.str() : std::string("undef"));
  }
  return s;
}
// Runs every case through perl (the original's own translation) and through Expr; returns
// {ours, perl's} per case. Perl's list is empty when perl is not installed.
std::pair<std::vector<std::string>, std::vector<std::string>> run_cases(const std::vector<PerlCase>& cases) {
  std::string script = "no strict; no warnings;\n"
                       "sub dump_s { my ($h, $p, $out) = @_; for my $k (sort keys %$h) {"
                       " my $v = $h->{$k}; my $q = $p eq '' ? $k : \"$p/$k\";"
                       " if (ref $v) { dump_s($v, $q, $out) } else { push @$out, \"$q=\" . (defined $v ? $v : 'undef') } } }\n";
  std::vector<std::string> ours;
  for (const auto& c : cases) {
    Vars vars = sample_vars(c.flag0, c.time);
    StateTree st;
    std::string init = "{ my $S = {};";
    for (const auto& [keys, value] : c.state) {
      st.set(keys, Scalar::string(value), nullptr);
      init += " $S->";
      for (const auto& k : keys) init += "{'" + k + "'}";
      init += " = '" + value + "';";
    }
    script += init + " my $r = eval { " + to_perl(c.expr, vars) + " };"
              " my @o; dump_s($S, '', \\@o);"
              " print join(' ', ($@ ? 'E' : defined $r ? \"D:$r\" : 'U'), @o), \"\\n\"; }\n";
    auto r = Expr::parse(c.expr, here()).evaluate(vars, &st);
    ours.push_back(describe(r, st));
  }
  std::vector<std::string> perl;
  if (std::system("perl -e 1 >/dev/null 2>&1") != 0) return {ours, perl};
  std::string path = std::string(BINARY_DIR) + "/expr_perl_check_" + std::to_string(getpid()) + ".pl";
  std::ofstream(path) << script;
  FILE* p = popen(("perl " + path).c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return {ours, perl};
  std::string perl_out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) perl_out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << perl_out;
  std::remove(path.c_str());
  std::istringstream lines(perl_out);
  std::string line;
  while (std::getline(lines, line)) perl.push_back(line);
  EXPECT_EQ(perl.size(), cases.size()) << "perl printed a different number of lines";
  return {ours, perl};
}
}  // namespace

TEST(Expr, MatchesPerlOnTheRecipes) {
  if (std::system("perl -e 1 >/dev/null 2>&1") != 0) GTEST_SKIP() << "perl not installed";
  const double t0 = 1709633100;
  const std::vector<std::string> exprs = {
      "PORT == 22",
      "PORT == 22 && FLAG0 < 255",
      "PORT == 22 && ( ! state(IP,visits,prevtime) || TIME-state(IP,visits,prevtime) > 3600)",
      "state(IP,visits,prevtime) = TIME",
      "PORT == 22 && state(IP,visits,num) < 2",
      "state(IP,visits,num)++",
      "PORT == 22 && state(IP,visits,PORT,num) < FLAG0",
      "state(IP,visits,PORT,num)++",
      "PORT == 22 && ! state(IP,uniqueval,FLAG0)",
      "state(IP,uniqueval,FLAG0)++",
      "PORT == 22 && ! state(IP,uniqueval,THISHOUR,FLAG0)",
      "PORT == 22 && ! state(IP,uniqueval,THISDAY,FLAG0)",
      "PORT == 22 && FLAG0 < 255 && state(IP,visits,num) < 1",
      "state(IP,c) = state(IP,a) + state(IP,b)",
      "state(IP,a) / (FLAG0 - 3)",
      "not state(IP,a) or state(IP,b) and 0",
      "-state(IP,a) % 3 + 7 / 2",
      "state(IP,a)++ + ++state(IP,a)",
      "state(IP,a) -= 2.5; state(IP,a) * 2",
      "IP eq '198.18.0.1' && LOGIP ne IP",
      "TIME % 3600 - THISMINUTE * 60",
  };
  std::vector<PerlCase> cases;
  for (const auto& e : exprs) {
    cases.push_back({e, 3, t0, {}});
    cases.push_back({e, 1, t0 + 1800, {{{"198.18.0.1", "visits", "prevtime"}, "1709633000"},
                                       {{"198.18.0.1", "visits", "num"}, "1"},
                                       {{"198.18.0.1", "visits", "22", "num"}, "1"},
                                       {{"198.18.0.1", "uniqueval", "1"}, "1"},
                                       {{"198.18.0.1", "uniqueval", "10", "1"}, "1"},
                                       {{"198.18.0.1", "a"}, "7"},
                                       {{"198.18.0.1", "b"}, "0"}}});
    cases.push_back({e, 2, t0 + 7200, {{{"198.18.0.1", "visits", "prevtime"}, "1709633000"},
                                       {{"198.18.0.1", "visits", "num"}, "2"},
                                       {{"198.18.0.1", "uniqueval", "5", "2"}, "1"},
                                       {{"198.18.0.1", "a"}, "-4"},
                                       {{"198.18.0.1", "b"}, "x"}}});
  }
  auto [ours, perl] = run_cases(cases);
  ASSERT_EQ(perl.size(), ours.size());
  for (std::size_t i = 0; i < ours.size(); ++i)
    EXPECT_EQ(ours[i], perl[i]) << "case " << i << ": " << cases[i].expr << " (FLAG0=" << cases[i].flag0 << ")";
}

// The edge cases a differential run against perl 5.36 found (issue 20), with the values perl
// printed: each is checked against those values and, when perl is installed, against perl now.
TEST(Expr, MatchesPerlOnTheEdges) {
  const double t0 = 1709633100;  // THISDAY 5
  struct Edge {
    std::string expr;
    std::uint32_t flag0;
    std::string perl;  // what perl 5.36 gave: "D:value" then the state, as describe() prints
  };
  const std::vector<Edge> edges = {
      // `not (...)` is a call: `not (X) && Y` is `(not X) && Y`.
      {"not (PORT == 22) && FLAG0 == 1", 7, "D:"},
      {"not (PORT == 22) || 1", 7, "D:1"},
      {"not (PORT == 23) && 0", 7, "D:0"},
      {"1 + not (0)", 7, "D:2"},
      {"not (0) ? 'y' : 'n'", 7, "D:y"},
      {"not not (0) && 0", 7, "D:1"},
      {"not (1) or 7", 7, "D:7"},
      {"not(0) == 0", 7, "D:"},
      {"not 1 == 2", 7, "D:1"},
      // Exact 64-bit integers where both operands are integers and the result fits.
      {"TIME * 1000000000", 3, "D:1709633100000000000"},
      {"1e15 + 1", 3, "D:1000000000000001"},
      {"1e15", 3, "D:1e+15"},
      {"1e18 + 1", 3, "D:1e+18"},
      {"0.5 * 4 + 9007199254740992", 3, "D:9007199254740994"},
      {"18446744073709551615 % THISDAY", 3, "D:0"},
      {"18446744073709551615 % 7", 3, "D:1"},
      {"18446744073709551615 % -7", 3, "D:-6"},
      {"-7 % 18446744073709551615", 3, "D:18446744073709551608"},
      {"1e20 % 7", 3, "D:2"},
      {"-5.5 % 3", 3, "D:1"},
      {"7.9 % -2", 3, "D:-1"},
      {"010 + 1", 3, "D:9"},
      {"18446744073709551615", 3, "D:18446744073709551615"},
      {"18446744073709551616", 3, "D:1.84467440737096e+19"},
      {"18446744073709551615 + 1", 3, "D:1.84467440737096e+19"},
      {"9223372036854775807 + 1", 3, "D:9223372036854775808"},
      {"-9223372036854775808 - 1", 3, "D:-9.22337203685478e+18"},
      {"-9223372036854775808 * -1", 3, "D:9223372036854775808"},
      {"3000000000 * 3000000000", 3, "D:9000000000000000000"},
      {"4294967296 * 4294967296", 3, "D:1.84467440737096e+19"},
      {"18446744073709551614 / 2", 3, "D:9223372036854775807"},
      {"-9007199254740993 / -1", 3, "D:9007199254740993"},
      {"7 / 2", 3, "D:3.5"},
      {"9007199254740993 == 9007199254740992", 3, "D:"},
      {"9007199254740993 > 9007199254740992", 3, "D:1"},
      {"-18446744073709551615", 3, "D:-1.84467440737096e+19"},
      {"'1.0' + 9007199254740992", 3, "D:9.00719925474099e+15"},
      {"'1e0' + 9007199254740992", 3, "D:9007199254740993"},
      {"' 12 ' + 9007199254740992", 3, "D:9007199254741004"},
      {"'12abc' + 9007199254740992", 3, "D:9.007199254741e+15"},
      {"state(IP,a) + 1000000000000000", 3, "D:1e+15"},
      {"state(IP,a) += 9007199254740993", 3, "D:9007199254740993 198.18.0.1/a=9007199254740993"},
      {"state(IP,a) -= 9007199254740993", 3, "D:-9007199254740993 198.18.0.1/a=-9007199254740993"},
      {"state(IP,a) = 9223372036854775807; state(IP,a)++; state(IP,a)", 3,
       "D:9223372036854775808 198.18.0.1/a=9223372036854775808"},
      {"state(IP,a) = 18446744073709551615; ++state(IP,a)", 3,
       "D:1.84467440737096e+19 198.18.0.1/a=1.84467440737096e+19"},
      {"state(IP,a) = '9223372036854775807'; ++state(IP,a)", 3,
       "D:9223372036854775808 198.18.0.1/a=9223372036854775808"},
      // Strings: unary minus and ++/--.
      {"-'-abc'", 3, "D:+abc"},
      {"-'+abc'", 3, "D:-abc"},
      {"-'abc'", 3, "D:-abc"},
      {"-'_x'", 3, "D:-_x"},
      {"-'-'", 3, "D:+"},
      {"-''", 3, "D:0"},
      {"-'-5'", 3, "D:5"},
      {"-'1.5'", 3, "D:-1.5"},
      {"-'9abc'", 3, "D:-9"},
      {"-state(IP,a)", 3, "D:0"},
      {"state(IP,a) = '12abc'; state(IP,a)++", 3, "D:12abc 198.18.0.1/a=13"},
      {"state(IP,a) = 'Zz'; ++state(IP,a)", 3, "D:AAa 198.18.0.1/a=AAa"},
      {"state(IP,a) = 'a9'; ++state(IP,a)", 3, "D:b0 198.18.0.1/a=b0"},
      {"state(IP,a) = '09'; ++state(IP,a)", 3, "D:10 198.18.0.1/a=10"},
      {"state(IP,a) = ''; state(IP,a)--; state(IP,a)", 3, "D:-1 198.18.0.1/a=-1"},
      {"state(IP,a) = 'a'; --state(IP,a)", 3, "D:-1 198.18.0.1/a=-1"},
  };
  std::vector<PerlCase> cases;
  for (const auto& e : edges) cases.push_back({e.expr, e.flag0, t0, {}});
  auto [ours, perl] = run_cases(cases);
  for (std::size_t i = 0; i < edges.size(); ++i) {
    EXPECT_EQ(ours[i], edges[i].perl) << "ours, case " << i << ": " << edges[i].expr;
    if (i < perl.size()) {
      EXPECT_EQ(perl[i], edges[i].perl) << "perl, case " << i << ": " << edges[i].expr;
    }
  }
}

// Deliberate differences from perl (doc/RULES.md, "Deliberate differences from Perl"): a Perl
// scalar remembers that it was used as a number, ours do not. Checked both ways so that a change
// on either side shows.
TEST(Expr, DocumentedDifferencesFromPerl) {
  const double t0 = 1709633100;
  struct Diff {
    std::string expr;
    std::string ours, perl;
  };
  const std::vector<Diff> diffs = {
      // ++ on a string that was compared as a number: perl counts (0 + 1), we increment the letters.
      {"state(IP,a) = 'aa'; state(IP,a) == 0; state(IP,a)++; state(IP,a)", "D:ab 198.18.0.1/a=ab",
       "D:1 198.18.0.1/a=1"},
      // A double used as an integer prints as one afterwards in perl.
      {"state(IP,a) = 1e15; state(IP,a) + 1; state(IP,a)", "D:1e+15 198.18.0.1/a=1e+15",
       "D:1000000000000000 198.18.0.1/a=1000000000000000"},
  };
  std::vector<PerlCase> cases;
  for (const auto& d : diffs) cases.push_back({d.expr, 3, t0, {}});
  auto [ours, perl] = run_cases(cases);
  for (std::size_t i = 0; i < diffs.size(); ++i) {
    EXPECT_EQ(ours[i], diffs[i].ours) << diffs[i].expr;
    if (i < perl.size()) {
      EXPECT_EQ(perl[i], diffs[i].perl) << diffs[i].expr;
    }
  }
}

TEST(Expr, LiteralsAndOctal) {
  EXPECT_EQ(evs("010"), "8");
  EXPECT_EQ(evs("0777 + 0"), "511");
  EXPECT_EQ(evs("00"), "0");
  EXPECT_EQ(evs("0.5 + 0"), "0.5");
  auto expect_error = [](const std::string& text, const std::string& fragment) {
    try {
      Expr::parse(text, here());
      ADD_FAILURE() << "no error for " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << text << " -> " << e.what();
    }
  };
  expect_error("09", "illegal octal digit '9'");
  expect_error("01.5", "bad number");  // perl: 01 . 5, a concatenation we do not have
  expect_error("0x10", "bad number");
  expect_error("1_000", "bad number");
  expect_error("02000000000000000000000", "octal number too large");
}

TEST(Scalar, ExactIntegersSurviveTheStateFile) {
  StateTree st;
  st.set({"u"}, Scalar::uinteger(18446744073709551615ULL), nullptr);
  st.set({"i"}, Scalar::integer(-9223372036854775807LL - 1), nullptr);
  st.set({"n"}, Scalar::number(1e15), nullptr);
  const std::string path = std::string(BINARY_DIR) + "/expr_exact_cache_" + std::to_string(getpid());
  ASSERT_EQ(save_cache(path, st, {}), std::nullopt);
  auto back = load_cache(path);
  std::remove(path.c_str());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->state.get({"u"}).str(), "18446744073709551615");
  EXPECT_EQ(back->state.get({"i"}).str(), "-9223372036854775808");
  EXPECT_EQ(back->state.get({"n"}).str(), "1e+15");
}
