//! Stages: a pipeline of several modules, each stage's named outputs leading to topics or to
//! other stages through repartition topics.
//!
//! ```toml
//! application_id = "word-count"
//! inputs = ["sentences"]
//!
//! [stages.split.module]                  # a stage: a module, as `[module]` is
//! path = "split.wasm"
//! [stages.split.outputs]
//! default = { stage = "count" }          # to the next stage, keyed by the output's key
//!
//! [stages.count.module]
//! path = "count.wasm"
//! [stages.count.outputs]
//! default = "word-counts"                # a topic, as in `[outputs]`
//! ```
//!
//! State is kept per partition of what a stage reads, so a stateful stage sees every record of
//! a key only when its input is partitioned by that key. An output routed to a stage goes to the
//! topic `<application_id>-<stage>-repartition`, partitioned by the output's key (murmur2, as
//! the Java clients), which is what that stage reads: the hop regroups records by their new key.
//! A stage that no other stage leads to reads the pipeline's `inputs` (or its own). Stages form
//! a chain or a DAG; a cycle is refused with the names of its stages.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{id_ok, shown, ModuleConfig, PipelineConfig, ID_RULE};

/// A `[stages.<name>]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The stage's module, with the keys of `[module]` but `name` (the stage's name names its
    /// state: changelog `<application_id>-<stage>-changelog`, stores under
    /// `<state_dir>/<application_id>/<stage>/`).
    pub module: ModuleConfig,
    /// Topics this stage reads when no stage leads to it; default: the pipeline's `inputs`.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    /// Output names (as the module routes to them), each to a topic or to a stage.
    #[serde(default)]
    pub outputs: BTreeMap<String, Route>,
    /// Partitions of this stage's repartition topic, when stages lead to it; default: as many
    /// as the pipeline's widest input.
    #[serde(default)]
    pub partitions: Option<i32>,
}

/// Where a stage's named output goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Route {
    /// A topic, by name.
    Topic(String),
    /// Another stage, through its repartition topic: `{ stage = "count" }`.
    Stage(StageRef),
}

/// `{ stage = "<name>" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRef {
    pub stage: String,
}

/// One stage as the loop runs it: its name, and the pipeline file as this stage sees it (its
/// module, the topics it reads, its outputs resolved to topics).
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// The pipeline with `module`, `inputs` and `outputs` of this stage.
    pub config: PipelineConfig,
    /// The repartition topic this stage reads, when stages lead to it, and its partition count
    /// when the file sets one.
    pub repartition: Option<(String, Option<i32>)>,
    /// Whether this stage's outputs go only to stages (it writes no topic of the user's).
    pub internal_only: bool,
}

/// The repartition topic of `stage`.
pub fn repartition_topic(application_id: &str, stage: &str) -> String {
    format!("{application_id}-{stage}-repartition")
}

impl PipelineConfig {
    /// Whether the file declares `[stages]` (rather than one `[module]`).
    pub fn has_stages(&self) -> bool {
        !self.stages.is_empty()
    }

    /// The stages in the order records flow through them (a stage before every stage it leads
    /// to; ties by name). A file with one `[module]` is one stage, named as its state.
    pub fn stages(&self) -> Vec<StageSpec> {
        if !self.has_stages() {
            return vec![StageSpec {
                name: self.store_name().to_owned(),
                config: self.clone(),
                repartition: None,
                internal_only: false,
            }];
        }
        let fed = self.fed_stages();
        // `check` refused a cycle: a config that passed it always orders.
        self.stage_order()
            .unwrap_or_else(|_| self.stages.keys().cloned().collect())
            .into_iter()
            .filter_map(|name| {
                let stage = self.stages.get(&name)?;
                let repartition =
                    fed.contains(&name).then(|| (repartition_topic(&self.application_id, &name), stage.partitions));
                let inputs = match &repartition {
                    Some((topic, _)) => vec![topic.clone()],
                    None => stage.inputs.clone().unwrap_or_else(|| self.inputs.clone()),
                };
                let outputs: BTreeMap<String, String> = stage
                    .outputs
                    .iter()
                    .map(|(output, route)| {
                        let topic = match route {
                            Route::Topic(topic) => topic.clone(),
                            Route::Stage(to) => repartition_topic(&self.application_id, &to.stage),
                        };
                        (output.clone(), topic)
                    })
                    .collect();
                let internal_only =
                    !stage.outputs.is_empty() && stage.outputs.values().all(|r| matches!(r, Route::Stage(_)));
                let mut module = stage.module.clone();
                module.name = Some(name.clone());
                let config =
                    PipelineConfig { inputs, outputs, module: Some(module), stages: BTreeMap::new(), ..self.clone() };
                Some(StageSpec { name, config, repartition, internal_only })
            })
            .collect()
    }

    /// Stages some stage leads to.
    fn fed_stages(&self) -> BTreeSet<String> {
        self.stages
            .values()
            .flat_map(|s| s.outputs.values())
            .filter_map(|r| match r {
                Route::Stage(to) => Some(to.stage.clone()),
                Route::Topic(_) => None,
            })
            .collect()
    }

    /// The stages in flow order, or, when they form a cycle, `Err` with the stages on it or
    /// behind it.
    fn stage_order(&self) -> Result<Vec<String>, Vec<String>> {
        let leads_to = |name: &str| -> BTreeSet<String> {
            self.stages.get(name).map_or_else(BTreeSet::new, |s| {
                s.outputs
                    .values()
                    .filter_map(|r| match r {
                        Route::Stage(to) if self.stages.contains_key(&to.stage) => Some(to.stage.clone()),
                        _ => None,
                    })
                    .collect()
            })
        };
        let mut waiting: BTreeMap<String, usize> = self.stages.keys().map(|n| (n.clone(), 0)).collect();
        for name in self.stages.keys() {
            for to in leads_to(name) {
                *waiting.entry(to).or_default() += 1;
            }
        }
        let mut order = Vec::new();
        while let Some(ready) = waiting.iter().find(|(_, n)| **n == 0).map(|(name, _)| name.clone()) {
            waiting.remove(&ready);
            for to in leads_to(&ready) {
                if let Some(n) = waiting.get_mut(&to) {
                    *n -= 1;
                }
            }
            order.push(ready);
        }
        match waiting.is_empty() {
            true => Ok(order),
            false => Err(waiting.into_keys().collect()),
        }
    }

    /// Refuses a stage graph that cannot run, naming the stage and key at fault.
    pub(super) fn check_stages(&self) -> Result<(), String> {
        match (&self.module, self.has_stages()) {
            (None, false) => return Err("missing `[module]` (or `[stages.<name>]` tables)".into()),
            (Some(_), true) => {
                return Err("a pipeline has one `[module]` or several `[stages.<name>]`, not both: \
                            make the module a stage"
                    .into())
            }
            (Some(_), false) => return Ok(()),
            (None, true) => {}
        }
        if !self.outputs.is_empty() {
            return Err("with stages, outputs belong to each stage: move `[outputs]` to \
                        `[stages.<name>.outputs]`"
                .into());
        }
        let fed = self.fed_stages();
        for (name, stage) in &self.stages {
            if !id_ok(name) {
                return Err(format!("stages.{} {ID_RULE}", shown(name)));
            }
            if stage.module.name.is_some() {
                return Err(format!(
                    "stages.{name}.module.name: a stage's state is named by the stage (`{name}`); remove it"
                ));
            }
            if fed.contains(name) && stage.inputs.is_some() {
                return Err(format!(
                    "stages.{name}.inputs: another stage leads to `{name}`, so it reads its repartition \
                     topic `{}`; remove its inputs (or give them to a stage of their own)",
                    repartition_topic(&self.application_id, name)
                ));
            }
            if let Some(inputs) = &stage.inputs {
                if inputs.is_empty() || inputs.iter().any(String::is_empty) {
                    return Err(format!("stages.{name}.inputs must name at least one topic, and no empty ones"));
                }
            }
            if stage.partitions.is_some_and(|n| n < 1) {
                return Err(format!("stages.{name}.partitions must be at least 1"));
            }
            if stage.partitions.is_some() && !fed.contains(name) {
                return Err(format!(
                    "stages.{name}.partitions sets the partitions of its repartition topic, but no stage leads \
                     to `{name}`"
                ));
            }
            for (output, route) in &stage.outputs {
                match route {
                    Route::Topic(topic) if topic.is_empty() => {
                        return Err(format!("stages.{name}.outputs.{output} names an empty topic"))
                    }
                    Route::Stage(to) if !self.stages.contains_key(&to.stage) => {
                        let known: Vec<&str> = self.stages.keys().map(String::as_str).collect();
                        return Err(format!(
                            "stages.{name}.outputs.{output} leads to stage `{}`, which the pipeline does not \
                             declare (stages: {})",
                            shown(&to.stage),
                            known.join(", ")
                        ));
                    }
                    _ => {}
                }
            }
        }
        if let Err(stuck) = self.stage_order() {
            return Err(format!(
                "the stages form a cycle (through {}): records would go round for ever; a stage may lead \
                 only to stages after it",
                stuck.join(", ")
            ));
        }
        Ok(())
    }
}

impl StageConfig {
    /// A stage of `module` whose outputs go to these routes.
    pub fn new(module: ModuleConfig, outputs: impl IntoIterator<Item = (String, Route)>) -> Self {
        Self { module, inputs: None, outputs: outputs.into_iter().collect(), partitions: None }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const TWO: &str = "application_id = \"wc\"\ninputs = [\"sentences\"]\n\
        [stages.split.module]\npath = \"split.wasm\"\n[stages.split.outputs]\ndefault = { stage = \"count\" }\n\
        [stages.count.module]\npath = \"count.wasm\"\n[stages.count.outputs]\ndefault = \"word-counts\"\n";

    #[test]
    fn two_stages_read_the_inputs_then_the_repartition_topic_in_flow_order() {
        let config = PipelineConfig::parse(TWO).unwrap_or_else(|e| panic!("{e}"));
        let stages = config.stages();
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["split", "count"]);
        assert_eq!(stages[0].config.inputs, ["sentences"]);
        assert_eq!(stages[0].config.outputs["default"], "wc-count-repartition");
        assert!(stages[0].internal_only && stages[0].repartition.is_none());
        assert_eq!(stages[1].config.inputs, ["wc-count-repartition"]);
        assert_eq!(stages[1].repartition, Some(("wc-count-repartition".into(), None)));
        assert_eq!(stages[1].config.store_name(), "count");
        assert_eq!(stages[1].config.outputs["default"], "word-counts");
    }

    #[test]
    fn a_single_module_file_is_one_stage_named_as_its_state() {
        let config = PipelineConfig::parse("application_id = \"a\"\ninputs = [\"in\"]\n[module]\npath = \"m.wasm\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let stages = config.stages();
        assert_eq!(stages.len(), 1);
        assert_eq!((stages[0].name.as_str(), &stages[0].config), ("state", &config));
    }

    #[test]
    fn a_cycle_is_refused_with_the_names_of_its_stages() {
        let text = TWO.replace("default = \"word-counts\"", "default = { stage = \"split\" }");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("cycle") && err.contains("split") && err.contains("count"), "{err}");
    }

    #[test]
    fn a_route_to_an_unknown_stage_or_a_module_beside_stages_is_refused_by_name() {
        let err = PipelineConfig::parse(&TWO.replace("stage = \"count\"", "stage = \"cuont\"")).unwrap_err();
        assert!(err.contains("stages.split.outputs.default") && err.contains("cuont"), "{err}");
        let err = PipelineConfig::parse(&format!("{TWO}[module]\npath = \"m.wasm\"\n")).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = PipelineConfig::parse(&format!("{TWO}[outputs]\ndefault = \"x\"\n")).unwrap_err();
        assert!(err.contains("[outputs]"), "{err}");
        let err = PipelineConfig::parse(
            &TWO.replace("[stages.count.module]", "[stages.count]\ninputs = [\"x\"]\n[stages.count.module]"),
        )
        .unwrap_err();
        assert!(err.contains("stages.count.inputs"), "{err}");
        let err = PipelineConfig::parse(&TWO.replace("[stages.split.module]", "[stages.\"..\".module]")).unwrap_err();
        assert!(err.contains("stages."), "{err}");
    }
}
