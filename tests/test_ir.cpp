// The IR's mutation API: use lists, erase while iterating, replace_all_uses at graph outputs, fresh
// names, topological sort, subgraph scoping.
#include <doctest/doctest.h>

#include "helpers.h"
#include "ir/verify.h"

using namespace mopt;
using mopt::test::parse_model;

namespace {
const char* kChain = R"(
<ir_version: 8, opset_import: ["" : 13]>
g (float[2] X) => (float[2] Y) {
  A = Relu(X)
  B = Sigmoid(A)
  Y = Tanh(B)
}
)";
}

TEST_CASE("use-def chains are built on import") {
  auto m = parse_model(kChain);
  ir::Graph& g = m->graph();
  ir::Value* a = g.find_local("A");
  REQUIRE(a != nullptr);
  CHECK(a->producer()->op_type() == "Relu");
  REQUIRE(a->uses().size() == 1);
  CHECK(a->uses()[0].node->op_type() == "Sigmoid");
  CHECK(g.find_local("Y")->is_graph_output());
  CHECK(g.find_local("X")->is_graph_input());
  ir::verify_invariants(*m);
}

TEST_CASE("erasing nodes while iterating a snapshot is safe") {
  auto m = parse_model(kChain);
  ir::Graph& g = m->graph();
  for (ir::Node* n : g.nodes()) {
    if (n->op_type() == "Sigmoid") {
      CHECK(g.replace_all_uses(n->output(0), n->input(0)));
      g.erase(n);
    }
  }
  g.compact();
  CHECK(g.node_count() == 2);
  CHECK(g.find_local("A")->uses()[0].node->op_type() == "Tanh");
  ir::verify_invariants(*m);
}

TEST_CASE("replace_all_uses keeps graph output names") {
  auto m = parse_model(kChain);
  ir::Graph& g = m->graph();
  ir::Value* y = g.find_local("Y");
  ir::Value* b = g.find_local("B");
  ir::Node* tanh = y->producer();
  CHECK(g.replace_all_uses(y, b));
  g.erase(tanh);
  g.compact();
  REQUIRE(g.outputs().size() == 1);
  CHECK(g.outputs()[0] == b);
  CHECK(b->name() == "Y");  // the output's name survives, carried by the new value
  ir::verify_invariants(*m);

  // A graph input cannot be renamed to take an output's place.
  auto m2 = parse_model(kChain);
  ir::Graph& g2 = m2->graph();
  CHECK_FALSE(g2.replace_all_uses(g2.find_local("Y"), g2.find_local("X")));
}

TEST_CASE("fresh names are unique and deterministic") {
  auto m = parse_model(kChain);
  CHECK(m->fresh_name("A") == "A_1");
  CHECK(m->fresh_name("A") == "A_2");
  CHECK(m->fresh_name("new") == "new");
  CHECK(m->fresh_name("new") == "new_1");
  auto m2 = parse_model(kChain);
  CHECK(m2->fresh_name("A") == "A_1");
}

TEST_CASE("create_node inserts before a position and toposort keeps a valid order") {
  auto m = parse_model(kChain);
  ir::Graph& g = m->graph();
  ir::Value* a = g.find_local("A");
  ir::Node* sigmoid = g.find_local("B")->producer();
  ir::Node* neg = g.create_node("Neg", {a}, 1, sigmoid);
  sigmoid->set_input(0, neg->output(0));
  auto nodes = g.nodes();
  REQUIRE(nodes.size() == 4);
  CHECK(nodes[1] == neg);
  g.toposort();
  ir::verify_invariants(*m);
}

TEST_CASE("toposort reports a cycle by node name") {
  auto m = parse_model(kChain);
  ir::Graph& g = m->graph();
  ir::Node* relu = g.find_local("A")->producer();
  relu->set_input(0, g.find_local("B"));
  CHECK(mopt::test::error_of([&] { g.toposort(); }).find("cycle") != std::string::npos);
}

TEST_CASE("subgraphs see outer values and are visited innermost first") {
  auto m = parse_model(R"(
<ir_version: 8, opset_import: ["" : 13]>
g (bool C, float[2] X) => (float[2] Y) {
  S = Relu(X)
  Y = If(C) <
    then_branch = t () => (float[2] TY) { TY = Identity(S) },
    else_branch = e () => (float[2] EY) { EY = Neg(S) }
  >
}
)");
  ir::Value* s = m->graph().find_local("S");
  CHECK(s->uses().size() == 2);  // both branches read the outer value
  std::vector<std::string> order;
  m->for_each_graph([&](ir::Graph& g) { order.push_back(g.name()); });
  CHECK(order == std::vector<std::string>{"t", "e", "g"});
  ir::verify_invariants(*m);
}

TEST_CASE("Constant nodes are constants, overridable initializers are not") {
  auto m = parse_model(R"(
<ir_version: 3, opset_import: ["" : 7]>
g (float[2] X, float[2] W) => (float[2] Y) {
  K = Constant<value = float[2] {1.0, 2.0}>()
  T = Add(X, K)
  Y = Mul(T, W)
}
)");
  // IR 3 style: W is both a graph input and an initializer, so the caller may override it.
  onnx::ModelProto proto = ir::export_model(*m);
  auto* w = proto.mutable_graph()->add_initializer();
  w->set_name("W");
  w->set_data_type(1);
  w->add_dims(2);
  w->add_float_data(1);
  w->add_float_data(2);
  auto m2 = mopt::io::load_model_from_bytes(proto.SerializeAsString());
  CHECK(m2->graph().find_local("K")->constant() != nullptr);
  CHECK(m2->graph().find_local("K")->constant()->numel() == 2);
  CHECK(m2->graph().find_local("W")->initializer() != nullptr);
  CHECK(m2->graph().find_local("W")->constant() == nullptr);
}
