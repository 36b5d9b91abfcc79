-- Monthly recurring revenue per month (UTC), plan and currency, with its movements.
-- Recurring = fixed-price line items with a monthly, quarterly, semi-annual or annual cadence
-- on subscription invoices that are not void (drafts included: the running period's invoice
-- is a draft). A line counts in month M when its service period spans the end of M
-- (start_date before the first instant of M+1, end_date at or after it); quarterly,
-- semi-annual and annual amounts are divided into months and rounded to the cent.
-- Movements compare each subscription's MRR on a plan with the month before.
with recursive
price_plans as (
    select pp.id as price_id, min(p.id) as plan_id
    from {dataset}.plans__prices pp
    join {dataset}.plans p on p._dlt_id = pp._dlt_parent_id
    group by pp.id
),
recurring as (
    select
        i.subscription_id,
        i.currency,
        coalesce(pp.plan_id, s.plan_id) as plan_id,
        li.start_date at time zone 'UTC' as service_start,
        li.end_date at time zone 'UTC' as service_end,
        -- Every branch keeps the amount's own DECIMAL type: DuckDB would otherwise unify the
        -- branches to the rounded branch's two places.
        case
            when li.price__cadence = 'monthly' then li.amount
            else li.amount * 0 + round(
                cast(li.amount as decimal(38, 9)) * case li.price__cadence
                    when 'quarterly' then 0.333333333333333334
                    when 'semi_annual' then 0.166666666666666667
                    else 0.083333333333333334
                end,
                2
            )
        end as monthly_amount
    from {dataset}.invoice_line_items li
    join {dataset}.invoices i on i.id = li.invoice_id
    left join {dataset}.subscriptions s on s.id = i.subscription_id
    left join price_plans pp on pp.price_id = li.price_id
    where li.deleted_at is null
      and i.deleted_at is null
      and i.invoice_source = 'subscription'
      and i.status <> 'void'
      and li.price__price_type = 'fixed_price'
      and li.price__cadence in ('monthly', 'quarterly', 'semi_annual', 'annual')
),
months (month_start) as (
    select min(date_trunc('month', service_start)) from recurring
    union all
    select month_start + interval '1 month'
    from months
    where month_start + interval '2 month' <= (select max(service_end) from recurring)
),
subscription_months as (
    select
        cast(m.month_start as date) as month,
        cast(m.month_start + interval '1 month' as date) as next_month,
        r.subscription_id,
        coalesce(r.plan_id, '') as plan_key,
        r.plan_id,
        r.currency,
        sum(r.monthly_amount) as mrr
    from recurring r
    join months m
      on r.service_start < m.month_start + interval '1 month'
     and r.service_end >= m.month_start + interval '1 month'
    group by m.month_start, r.subscription_id, r.plan_id, r.currency
    having sum(r.monthly_amount) > 0
),
movements as (
    select
        coalesce(cur.month, prev.next_month) as month,
        coalesce(cur.currency, prev.currency) as currency,
        coalesce(cur.plan_id, prev.plan_id) as plan_id,
        cur.mrr,
        prev.mrr as previous_mrr
    from subscription_months cur
    full join subscription_months prev
      on prev.next_month = cur.month
     and prev.subscription_id = cur.subscription_id
     and prev.plan_key = cur.plan_key
     and prev.currency = cur.currency
)
select
    m.month,
    m.currency,
    m.plan_id,
    p.name as plan_name,
    sum(coalesce(m.mrr, 0)) as mrr,
    count(m.mrr) as subscriptions,
    sum(case when m.previous_mrr is null then m.mrr else 0 end) as new_mrr,
    sum(case when m.mrr > m.previous_mrr then m.mrr - m.previous_mrr else 0 end) as expansion_mrr,
    sum(case when m.mrr < m.previous_mrr then m.previous_mrr - m.mrr else 0 end) as contraction_mrr,
    sum(case when m.mrr is null then m.previous_mrr else 0 end) as churned_mrr
from movements m
left join {dataset}.plans p on p.id = m.plan_id
where m.month <= (select max(month) from subscription_months)
group by m.month, m.currency, m.plan_id, p.name
