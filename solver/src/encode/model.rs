//! Models back to JSON requests.

use super::*;

impl Encoding<'_> {
    pub(super) fn value_json(model: &Model, term: &Term, ty: &Type) -> Json {
        let int = |i: &Int| model.eval(i, true).and_then(|v| v.as_i64()).unwrap_or(0);
        let string = |s: &Z3String| {
            model
                .eval(s, true)
                .and_then(|v| v.as_string())
                .map(|s| unescape(&s))
                .unwrap_or_default()
        };
        match (term, ty) {
            (Term::Str(s), _) => json!(string(s)),
            (Term::Bool(b), _) => json!(model
                .eval(b, true)
                .and_then(|v| v.as_bool())
                .unwrap_or(false)),
            (Term::Int(i), Type::Enum { members }) => {
                json!(members
                    .get(int(i).max(0) as usize)
                    .cloned()
                    .unwrap_or_default())
            }
            (Term::Int(i), Type::Decimal { .. }) => {
                let text = polctl_lang::decimal::Decimal::from_millionths(int(i)).to_string();
                serde_json::from_str(&text).unwrap_or(Json::Null)
            }
            (Term::Int(i), _) => json!(int(i)),
            (Term::List { len, items }, _) => {
                let len = int(len).clamp(0, items.len() as i64) as usize;
                json!(items[..len].iter().map(string).collect::<Vec<_>>())
            }
        }
    }

    /// A model of the request variables as a JSON request (language.md §1).
    pub fn request_from_model(&self, model: &Model) -> Json {
        let tool = model
            .eval(&self.tool, true)
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            .clamp(0, self.set.schema.tools.len().saturating_sub(1) as i64)
            as usize;
        self.request_from_model_as(model, tool)
    }

    /// The request of a model as a request of `tool` (this schema's index), whatever the
    /// model's tool variable says: in `polctl diff` the model's tool is the new version's.
    pub fn request_from_model_as(&self, model: &Model, tool: usize) -> Json {
        let schema = &self.set.schema;
        let object = |declared: &[Attribute], terms: &[Term]| -> Json {
            Json::Object(
                declared
                    .iter()
                    .zip(terms)
                    .map(|(a, t)| (a.name.clone(), Self::value_json(model, t, &a.ty)))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut args = Map::new();
        if let Some(tool_decl) = schema.tools.get(tool) {
            for arg in &tool_decl.args {
                let Some(var) = self.args.get(&(arg.name.clone(), type_key(&arg.ty))) else {
                    continue;
                };
                let present = model
                    .eval(&var.present, true)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if present || !arg.optional {
                    args.insert(
                        arg.name.clone(),
                        Self::value_json(model, &var.value, &arg.ty),
                    );
                }
            }
        }
        let approvals: Vec<&String> = schema
            .approvers
            .iter()
            .zip(&self.approvals)
            .filter(|(_, b)| {
                model
                    .eval(*b, true)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false)
            })
            .map(|(g, _)| g)
            .collect();
        let counters: Map<String, Json> = self
            .counters
            .iter()
            .filter(|(rule, _)| self.set.rules[**rule].tools.contains(&tool))
            .filter_map(|(rule, counter)| {
                let value = model
                    .eval(counter, true)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                (value > 0).then(|| (self.set.rules[*rule].id.clone(), json!(value)))
            })
            .collect();
        let mut request = Map::new();
        request.insert("agent".into(), object(&schema.agent, &self.agent));
        request.insert("context".into(), object(&schema.context, &self.context));
        request.insert(
            "tool".into(),
            json!(schema
                .tools
                .get(tool)
                .map(|t| t.name.clone())
                .unwrap_or_default()),
        );
        request.insert("args".into(), Json::Object(args));
        let session = model
            .eval(&self.session, true)
            .and_then(|v| v.as_string())
            .map(|s| unescape(&s))
            .unwrap_or_default();
        if !session.is_empty() {
            request.insert("session".into(), json!(session));
        }
        if !approvals.is_empty() {
            request.insert("approvals".into(), json!(approvals));
        }
        if !counters.is_empty() {
            request.insert("counters".into(), Json::Object(counters));
        }
        Json::Object(request)
    }
}
