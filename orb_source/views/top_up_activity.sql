-- Each active top-up, with the increments top-ups added to its customer's credits in its
-- currency: ledger increments into live blocks whose credit_block_source is 'top_up'. Orb
-- does not link a block to the top-up that created it, so increments are per customer and
-- currency (Orb keeps one active top-up per customer and currency).
with increments as (
    select
        e.customer_id,
        e.currency,
        count(*) as increments,
        sum(e.amount) as credits_added,
        max(e.created_at) as last_increment_at
    from {dataset}.credit_ledger_entries e
    join {dataset}.credit_blocks b on b.id = e.credit_block__id
    where e.deleted_at is null
      and b.deleted_at is null
      and e.entry_type = 'increment'
      and b.credit_block_source = 'top_up'
    group by e.customer_id, e.currency
)
select
    t.id as top_up_id,
    t.customer_id,
    c.name as customer_name,
    t.currency,
    t.amount,
    t.threshold,
    t.per_unit_cost_basis,
    t.expires_after,
    t.expires_after_unit,
    coalesce(i.increments, 0) as increments,
    coalesce(i.credits_added, 0) as credits_added,
    i.last_increment_at
from {dataset}.top_ups t
left join increments i on i.customer_id = t.customer_id and i.currency = t.currency
left join {dataset}.customers c on c.id = t.customer_id
where t.deleted_at is null
