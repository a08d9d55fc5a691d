"""D2D topology as a networkx graph: routing, link bandwidth, latency, throughput, bisection.

The model follows RapidChiplet (system.md, "RapidChiplet"), in physical units:

* **Nodes** are the dies that take part in the D2D fabric (compute and IO dies; HBM stacks hang
  off their host and are not routed through). Node attributes: ``kind``, ``latency_ns`` (the
  die's internal PHY-to-endpoint latency) and ``relay`` (whether it forwards traffic).
* **Edges** are D2D links. Per-direction bandwidth = shoreline x the PHY's GB/s per mm
  (``shoreline_gbyte_s_per_mm`` in packaging/data/phys.toml, per direction), taking the narrower
  of the two PHYs. Parallel links between the same two dies add up. Latency = the PHY's
  adapter+PHY latency + length x ``FLIGHT_NS_PER_MM``.
* **Routing**: shortest path by latency that relays only through ``relay`` dies; ties go to the
  path networkx's Dijkstra finds first on the sorted graph (deterministic).
* **Latency of a flow**: internal latency at the source, each link's latency, the internal
  latency of every relaying die, internal latency at the destination (RapidChiplet's
  ``(int+phy)_src + sum link + sum_relay (phy+int+phy) + (int+phy)_dst`` with PHY latency counted
  in each link). Reported as the traffic-weighted mean and the maximum.
* **Throughput**: the traffic pattern's relative rates are routed; each directed link's load is the
  sum of the rates crossing it; the pattern can be scaled until the most loaded link saturates:
  aggregate = min over links (bandwidth / load) x total rate (RapidChiplet ``min_links(bw/load) x
  sum traffic``), in GB/s.
* **Bisection bandwidth**: the minimum, over all balanced two-way partitions of the fabric's dies,
  of the per-direction bandwidth of the links cut.
"""

from itertools import combinations

import networkx as nx

from .placement import link_length_mm

__all__ = ["build_graph", "route", "routes", "traffic_pattern", "evaluate_traffic",
           "bisection_bandwidth", "summary", "FLIGHT_NS_PER_MM", "PATTERNS"]

#: Signal flight time on interposer wires. d2d.md §5 "Link latency": >= ~7 ps/mm LC-limited, RC
#: wires slower; 10 ps/mm here [assumption].
FLIGHT_NS_PER_MM = 0.01
PATTERNS = ("uniform", "neighbor", "to_io", "all_to_all_compute")


def build_graph(system, tech):
    """The D2D fabric of ``system`` as an undirected :class:`networkx.Graph`."""
    g = nx.Graph(name=system.name)
    fabric = sorted({n for link in system.links for n in (link.a_die, link.b_die)}
                    | {d.name for d in system.dies if d.chiplet.kind != "memory"})
    for n in fabric:
        d = system.die(n)
        g.add_node(n, kind=d.chiplet.kind, latency_ns=d.chiplet.internal_latency_ns,
                   relay=d.chiplet.relay)
    for i, link in enumerate(system.links):
        phy = tech.phys[link.phy]
        a = system.die(link.a_die).chiplet.phy(link.a_phy)
        b = system.die(link.b_die).chiplet.phy(link.b_phy)
        shore = min(a.width_mm, b.width_mm)
        bw = phy.shoreline_gbyte_s_per_mm * shore
        length = link_length_mm(system, link)
        lat = phy.latency_ns + length * FLIGHT_NS_PER_MM
        u, v = link.a_die, link.b_die
        if g.has_edge(u, v):   # parallel links: bandwidth adds, latency of the first
            e = g.edges[u, v]
            e["bw_gbs"] += bw
            e["links"].append(i)
        else:
            g.add_edge(u, v, bw_gbs=bw, latency_ns=lat, length_mm=length, phy=link.phy,
                       pj_per_bit=phy.pj_per_bit, links=[i])
    return g


def route(g, src, dst):
    """Shortest-latency path ``[src, ..., dst]`` relaying only through ``relay`` dies."""
    if src == dst:
        return [src]
    allowed = [n for n in g.nodes if n in (src, dst) or g.nodes[n].get("relay", True)]
    sub = g.subgraph(allowed)
    try:
        return nx.dijkstra_path(sub, src, dst, weight="latency_ns")
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None


def routes(g, flows):
    """``{(src, dst): path}`` for each flow; unreachable flows map to None."""
    return {(s, t): route(g, s, t) for s, t in flows}


def traffic_pattern(g, pattern="uniform"):
    """Relative traffic rates ``{(src, dst): rate}`` among the fabric's endpoints.

    ``uniform``: every ordered pair of compute and IO dies, rate 1 (RapidChiplet random_uniform).
    ``all_to_all_compute``: every ordered pair of compute dies. ``neighbor``: compute die i sends to
    compute die i+1 (sorted names, wrapping). ``to_io``: every compute die sends rate 1 to the IO
    dies (split evenly) and receives the same back.
    """
    comp = sorted(n for n in g.nodes if g.nodes[n]["kind"] == "compute")
    io = sorted(n for n in g.nodes if g.nodes[n]["kind"] == "io")
    if pattern == "uniform":
        ends = sorted(comp + io)
        return {(s, t): 1.0 for s in ends for t in ends if s != t}
    if pattern == "all_to_all_compute":
        return {(s, t): 1.0 for s in comp for t in comp if s != t}
    if pattern == "neighbor":
        if len(comp) < 2:
            return {}
        return {(comp[i], comp[(i + 1) % len(comp)]): 1.0 for i in range(len(comp))}
    if pattern == "to_io":
        out = {}
        for c in comp:
            for i in io:
                out[(c, i)] = 1.0 / len(io)
                out[(i, c)] = 1.0 / len(io)
        return out
    raise ValueError(f"unknown traffic pattern {pattern!r}; patterns are {', '.join(PATTERNS)}")


def _path_latency(g, path):
    lat = g.nodes[path[0]]["latency_ns"] + g.nodes[path[-1]]["latency_ns"]
    for u, v in zip(path, path[1:]):
        lat += g.edges[u, v]["latency_ns"]
    for n in path[1:-1]:
        lat += g.nodes[n]["latency_ns"]
    return lat


def evaluate_traffic(g, traffic):
    """Route a traffic pattern: latency, per-link load and saturation throughput.

    Returns a dict: ``mean_latency_ns`` (rate-weighted), ``max_latency_ns``, ``throughput_gbs``
    (aggregate GB/s when the most loaded directed link saturates), ``bottleneck`` ((u, v) link),
    ``loads`` ({(u, v): relative load}), ``mean_hops``, ``unroutable`` (flows without a path).
    """
    loads, total, lat_sum, hop_sum, max_lat, bad = {}, 0.0, 0.0, 0.0, 0.0, []
    for (s, t), rate in traffic.items():
        if rate <= 0:
            continue
        path = route(g, s, t)
        if path is None:
            bad.append((s, t))
            continue
        total += rate
        lat = _path_latency(g, path)
        lat_sum += rate * lat
        hop_sum += rate * (len(path) - 1)
        max_lat = max(max_lat, lat)
        for u, v in zip(path, path[1:]):
            loads[(u, v)] = loads.get((u, v), 0.0) + rate
    if total == 0:
        return {"mean_latency_ns": 0.0, "max_latency_ns": 0.0, "throughput_gbs": 0.0,
                "bottleneck": None, "loads": {}, "mean_hops": 0.0, "unroutable": bad}
    scale, neck = float("inf"), None
    for (u, v), load in sorted(loads.items()):
        s = g.edges[u, v]["bw_gbs"] / load
        if s < scale:
            scale, neck = s, (u, v)
    return {"mean_latency_ns": lat_sum / total, "max_latency_ns": max_lat,
            "throughput_gbs": scale * total, "bottleneck": neck, "loads": loads,
            "mean_hops": hop_sum / total, "unroutable": bad}


def bisection_bandwidth(g, nodes=None):
    """Minimum per-direction bandwidth (GB/s) cut by a balanced bipartition of ``nodes``.

    ``nodes`` defaults to all dies of the fabric. Exhaustive over partitions (fine for the tens of
    dies of a package; over 22 dies it raises ValueError).
    """
    nodes = sorted(nodes if nodes is not None else g.nodes)
    n = len(nodes)
    if n < 2:
        return 0.0
    if n > 22:
        raise ValueError(f"bisection of {n} dies is too large for the exhaustive search")
    first, rest = nodes[0], nodes[1:]
    best = float("inf")
    # nodes[0] goes in side A (halves the search); for odd n side A may be the smaller or the
    # larger half
    for size in sorted({n // 2, n - n // 2}):
        for combo in combinations(rest, size - 1):
            side = set(combo) | {first}
            cut = sum(d["bw_gbs"] for u, v, d in g.edges(data=True) if (u in side) != (v in side))
            best = min(best, cut)
    return best


def summary(system, tech, patterns=("uniform", "to_io", "neighbor")):
    """Key topology numbers of a system for the report."""
    g = build_graph(system, tech)
    out = {"dies": g.number_of_nodes(), "links": g.number_of_edges(),
           "total_link_bw_gbs": sum(d["bw_gbs"] for _, _, d in g.edges(data=True)),
           "bisection_gbs": bisection_bandwidth(g),
           "diameter_hops": nx.diameter(g) if g.number_of_nodes() and nx.is_connected(g) else None,
           "links_detail": [{"a": u, "b": v, "bw_gbs": d["bw_gbs"], "length_mm": d["length_mm"],
                             "latency_ns": d["latency_ns"], "phy": d["phy"]}
                            for u, v, d in sorted(g.edges(data=True))]}
    for p in patterns:
        r = evaluate_traffic(g, traffic_pattern(g, p))
        out[p] = {"mean_latency_ns": r["mean_latency_ns"], "max_latency_ns": r["max_latency_ns"],
                  "throughput_gbs": r["throughput_gbs"], "mean_hops": r["mean_hops"],
                  "bottleneck": list(r["bottleneck"]) if r["bottleneck"] else None,
                  "unroutable": len(r["unroutable"])}
    return out
