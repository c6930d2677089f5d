"""The TPC-DS warehouse (contract: shared/contracts/tpcds.md, seed 004) as declarative data.

The 24 tables of the TPC-DS v3.2.0 specification, each column once, in the
specification's order (the order dsdgen writes a line's fields in), typed with
the specification's DDL type: ``identifier`` (the ``*_sk`` surrogate keys, the
ticket and order numbers), ``integer``, ``decimal(p,s)``, ``date`` and
``string`` (the DDL's ``char(n)``/``varchar(n)``: the lake keeps their values
unchanged and enforces no length). Names are those of the DuckDB ``tpcds``
extension's tables, which follow v3.2.0 (``c_last_review_date_sk``,
``s_tax_percentage``).

Bronze's parsing, silver's rules, partitions and deduplication, the checks, the
catalog and the generator all read these specs: adding a column is one word in
:data:`_DDL`. No Spark import here (the Spark types are in ``schemas``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

#: Table name, then its columns as ``name type`` in specification order.
_DDL = """
call_center:
    cc_call_center_sk identifier, cc_call_center_id string, cc_rec_start_date date,
    cc_rec_end_date date, cc_closed_date_sk identifier, cc_open_date_sk identifier, cc_name string,
    cc_class string, cc_employees integer, cc_sq_ft integer, cc_hours string, cc_manager string,
    cc_mkt_id integer, cc_mkt_class string, cc_mkt_desc string, cc_market_manager string,
    cc_division integer, cc_division_name string, cc_company integer, cc_company_name string,
    cc_street_number string, cc_street_name string, cc_street_type string, cc_suite_number string,
    cc_city string, cc_county string, cc_state string, cc_zip string, cc_country string,
    cc_gmt_offset decimal(5,2), cc_tax_percentage decimal(5,2)
catalog_page:
    cp_catalog_page_sk identifier, cp_catalog_page_id string, cp_start_date_sk identifier,
    cp_end_date_sk identifier, cp_department string, cp_catalog_number integer,
    cp_catalog_page_number integer, cp_description string, cp_type string
catalog_returns:
    cr_returned_date_sk identifier, cr_returned_time_sk identifier, cr_item_sk identifier,
    cr_refunded_customer_sk identifier, cr_refunded_cdemo_sk identifier,
    cr_refunded_hdemo_sk identifier, cr_refunded_addr_sk identifier,
    cr_returning_customer_sk identifier, cr_returning_cdemo_sk identifier,
    cr_returning_hdemo_sk identifier, cr_returning_addr_sk identifier, cr_call_center_sk identifier,
    cr_catalog_page_sk identifier, cr_ship_mode_sk identifier, cr_warehouse_sk identifier,
    cr_reason_sk identifier, cr_order_number identifier, cr_return_quantity integer,
    cr_return_amount decimal(7,2), cr_return_tax decimal(7,2), cr_return_amt_inc_tax decimal(7,2),
    cr_fee decimal(7,2), cr_return_ship_cost decimal(7,2), cr_refunded_cash decimal(7,2),
    cr_reversed_charge decimal(7,2), cr_store_credit decimal(7,2), cr_net_loss decimal(7,2)
catalog_sales:
    cs_sold_date_sk identifier, cs_sold_time_sk identifier, cs_ship_date_sk identifier,
    cs_bill_customer_sk identifier, cs_bill_cdemo_sk identifier, cs_bill_hdemo_sk identifier,
    cs_bill_addr_sk identifier, cs_ship_customer_sk identifier, cs_ship_cdemo_sk identifier,
    cs_ship_hdemo_sk identifier, cs_ship_addr_sk identifier, cs_call_center_sk identifier,
    cs_catalog_page_sk identifier, cs_ship_mode_sk identifier, cs_warehouse_sk identifier,
    cs_item_sk identifier, cs_promo_sk identifier, cs_order_number identifier, cs_quantity integer,
    cs_wholesale_cost decimal(7,2), cs_list_price decimal(7,2), cs_sales_price decimal(7,2),
    cs_ext_discount_amt decimal(7,2), cs_ext_sales_price decimal(7,2),
    cs_ext_wholesale_cost decimal(7,2), cs_ext_list_price decimal(7,2), cs_ext_tax decimal(7,2),
    cs_coupon_amt decimal(7,2), cs_ext_ship_cost decimal(7,2), cs_net_paid decimal(7,2),
    cs_net_paid_inc_tax decimal(7,2), cs_net_paid_inc_ship decimal(7,2),
    cs_net_paid_inc_ship_tax decimal(7,2), cs_net_profit decimal(7,2)
customer:
    c_customer_sk identifier, c_customer_id string, c_current_cdemo_sk identifier,
    c_current_hdemo_sk identifier, c_current_addr_sk identifier, c_first_shipto_date_sk identifier,
    c_first_sales_date_sk identifier, c_salutation string, c_first_name string, c_last_name string,
    c_preferred_cust_flag string, c_birth_day integer, c_birth_month integer, c_birth_year integer,
    c_birth_country string, c_login string, c_email_address string, c_last_review_date_sk identifier
customer_address:
    ca_address_sk identifier, ca_address_id string, ca_street_number string, ca_street_name string,
    ca_street_type string, ca_suite_number string, ca_city string, ca_county string, ca_state string,
    ca_zip string, ca_country string, ca_gmt_offset decimal(5,2), ca_location_type string
customer_demographics:
    cd_demo_sk identifier, cd_gender string, cd_marital_status string, cd_education_status string,
    cd_purchase_estimate integer, cd_credit_rating string, cd_dep_count integer,
    cd_dep_employed_count integer, cd_dep_college_count integer
date_dim:
    d_date_sk identifier, d_date_id string, d_date date, d_month_seq integer, d_week_seq integer,
    d_quarter_seq integer, d_year integer, d_dow integer, d_moy integer, d_dom integer,
    d_qoy integer, d_fy_year integer, d_fy_quarter_seq integer, d_fy_week_seq integer,
    d_day_name string, d_quarter_name string, d_holiday string, d_weekend string, d_following_holiday string,
    d_first_dom integer, d_last_dom integer, d_same_day_ly integer, d_same_day_lq integer,
    d_current_day string, d_current_week string, d_current_month string, d_current_quarter string,
    d_current_year string
household_demographics:
    hd_demo_sk identifier, hd_income_band_sk identifier, hd_buy_potential string,
    hd_dep_count integer, hd_vehicle_count integer
income_band:
    ib_income_band_sk identifier, ib_lower_bound integer, ib_upper_bound integer
inventory:
    inv_date_sk identifier, inv_item_sk identifier, inv_warehouse_sk identifier,
    inv_quantity_on_hand integer
item:
    i_item_sk identifier, i_item_id string, i_rec_start_date date, i_rec_end_date date,
    i_item_desc string, i_current_price decimal(7,2), i_wholesale_cost decimal(7,2),
    i_brand_id integer, i_brand string, i_class_id integer, i_class string, i_category_id integer,
    i_category string, i_manufact_id integer, i_manufact string, i_size string, i_formulation string,
    i_color string, i_units string, i_container string, i_manager_id integer, i_product_name string
promotion:
    p_promo_sk identifier, p_promo_id string, p_start_date_sk identifier, p_end_date_sk identifier,
    p_item_sk identifier, p_cost decimal(15,2), p_response_target integer, p_promo_name string,
    p_channel_dmail string, p_channel_email string, p_channel_catalog string, p_channel_tv string,
    p_channel_radio string, p_channel_press string, p_channel_event string, p_channel_demo string,
    p_channel_details string, p_purpose string, p_discount_active string
reason:
    r_reason_sk identifier, r_reason_id string, r_reason_desc string
ship_mode:
    sm_ship_mode_sk identifier, sm_ship_mode_id string, sm_type string, sm_code string, sm_carrier string,
    sm_contract string
store:
    s_store_sk identifier, s_store_id string, s_rec_start_date date, s_rec_end_date date,
    s_closed_date_sk identifier, s_store_name string, s_number_employees integer,
    s_floor_space integer, s_hours string, s_manager string, s_market_id integer,
    s_geography_class string, s_market_desc string, s_market_manager string, s_division_id integer,
    s_division_name string, s_company_id integer, s_company_name string, s_street_number string,
    s_street_name string, s_street_type string, s_suite_number string, s_city string, s_county string,
    s_state string, s_zip string, s_country string, s_gmt_offset decimal(5,2),
    s_tax_percentage decimal(5,2)
store_returns:
    sr_returned_date_sk identifier, sr_return_time_sk identifier, sr_item_sk identifier,
    sr_customer_sk identifier, sr_cdemo_sk identifier, sr_hdemo_sk identifier,
    sr_addr_sk identifier, sr_store_sk identifier, sr_reason_sk identifier,
    sr_ticket_number identifier, sr_return_quantity integer, sr_return_amt decimal(7,2),
    sr_return_tax decimal(7,2), sr_return_amt_inc_tax decimal(7,2), sr_fee decimal(7,2),
    sr_return_ship_cost decimal(7,2), sr_refunded_cash decimal(7,2),
    sr_reversed_charge decimal(7,2), sr_store_credit decimal(7,2), sr_net_loss decimal(7,2)
store_sales:
    ss_sold_date_sk identifier, ss_sold_time_sk identifier, ss_item_sk identifier,
    ss_customer_sk identifier, ss_cdemo_sk identifier, ss_hdemo_sk identifier,
    ss_addr_sk identifier, ss_store_sk identifier, ss_promo_sk identifier,
    ss_ticket_number identifier, ss_quantity integer, ss_wholesale_cost decimal(7,2),
    ss_list_price decimal(7,2), ss_sales_price decimal(7,2), ss_ext_discount_amt decimal(7,2),
    ss_ext_sales_price decimal(7,2), ss_ext_wholesale_cost decimal(7,2),
    ss_ext_list_price decimal(7,2), ss_ext_tax decimal(7,2), ss_coupon_amt decimal(7,2),
    ss_net_paid decimal(7,2), ss_net_paid_inc_tax decimal(7,2), ss_net_profit decimal(7,2)
time_dim:
    t_time_sk identifier, t_time_id string, t_time integer, t_hour integer, t_minute integer,
    t_second integer, t_am_pm string, t_shift string, t_sub_shift string, t_meal_time string
warehouse:
    w_warehouse_sk identifier, w_warehouse_id string, w_warehouse_name string,
    w_warehouse_sq_ft integer, w_street_number string, w_street_name string, w_street_type string,
    w_suite_number string, w_city string, w_county string, w_state string, w_zip string, w_country string,
    w_gmt_offset decimal(5,2)
web_page:
    wp_web_page_sk identifier, wp_web_page_id string, wp_rec_start_date date, wp_rec_end_date date,
    wp_creation_date_sk identifier, wp_access_date_sk identifier, wp_autogen_flag string,
    wp_customer_sk identifier, wp_url string, wp_type string, wp_char_count integer,
    wp_link_count integer, wp_image_count integer, wp_max_ad_count integer
web_returns:
    wr_returned_date_sk identifier, wr_returned_time_sk identifier, wr_item_sk identifier,
    wr_refunded_customer_sk identifier, wr_refunded_cdemo_sk identifier,
    wr_refunded_hdemo_sk identifier, wr_refunded_addr_sk identifier,
    wr_returning_customer_sk identifier, wr_returning_cdemo_sk identifier,
    wr_returning_hdemo_sk identifier, wr_returning_addr_sk identifier, wr_web_page_sk identifier,
    wr_reason_sk identifier, wr_order_number identifier, wr_return_quantity integer,
    wr_return_amt decimal(7,2), wr_return_tax decimal(7,2), wr_return_amt_inc_tax decimal(7,2),
    wr_fee decimal(7,2), wr_return_ship_cost decimal(7,2), wr_refunded_cash decimal(7,2),
    wr_reversed_charge decimal(7,2), wr_account_credit decimal(7,2), wr_net_loss decimal(7,2)
web_sales:
    ws_sold_date_sk identifier, ws_sold_time_sk identifier, ws_ship_date_sk identifier,
    ws_item_sk identifier, ws_bill_customer_sk identifier, ws_bill_cdemo_sk identifier,
    ws_bill_hdemo_sk identifier, ws_bill_addr_sk identifier, ws_ship_customer_sk identifier,
    ws_ship_cdemo_sk identifier, ws_ship_hdemo_sk identifier, ws_ship_addr_sk identifier,
    ws_web_page_sk identifier, ws_web_site_sk identifier, ws_ship_mode_sk identifier,
    ws_warehouse_sk identifier, ws_promo_sk identifier, ws_order_number identifier,
    ws_quantity integer, ws_wholesale_cost decimal(7,2), ws_list_price decimal(7,2),
    ws_sales_price decimal(7,2), ws_ext_discount_amt decimal(7,2), ws_ext_sales_price decimal(7,2),
    ws_ext_wholesale_cost decimal(7,2), ws_ext_list_price decimal(7,2), ws_ext_tax decimal(7,2),
    ws_coupon_amt decimal(7,2), ws_ext_ship_cost decimal(7,2), ws_net_paid decimal(7,2),
    ws_net_paid_inc_tax decimal(7,2), ws_net_paid_inc_ship decimal(7,2),
    ws_net_paid_inc_ship_tax decimal(7,2), ws_net_profit decimal(7,2)
web_site:
    web_site_sk identifier, web_site_id string, web_rec_start_date date, web_rec_end_date date,
    web_name string, web_open_date_sk identifier, web_close_date_sk identifier, web_class string,
    web_manager string, web_mkt_id integer, web_mkt_class string, web_mkt_desc string,
    web_market_manager string, web_company_id integer, web_company_name string, web_street_number string,
    web_street_name string, web_street_type string, web_suite_number string, web_city string,
    web_county string, web_state string, web_zip string, web_country string, web_gmt_offset decimal(5,2),
    web_tax_percentage decimal(5,2)
"""

_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")
DDL_TYPES = ("identifier", "integer", "date", "string")


@dataclass(frozen=True)
class Column:
    """One column of the specification: its name and DDL type."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in DDL_TYPES and not _DECIMAL.fullmatch(self.type):
            raise ValueError(f"{self.name}: unknown DDL type {self.type!r}")

    @property
    def decimal(self) -> tuple[int, int] | None:
        """``(precision, scale)`` of a decimal column, else None."""
        m = _DECIMAL.fullmatch(self.type)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def numeric(self) -> bool:
        """An ``integer`` or ``decimal`` column (a measure candidate; identifiers are keys, not amounts)."""
        return self.type == "integer" or self.decimal is not None


@dataclass(frozen=True)
class Dating:
    """How a fact is dated in silver: its date key, the DATE column silver adds from ``date_dim``
    and the monthly partition key (``YYYY-MM`` of that date) it is stored under."""

    key: str  # e.g. ss_sold_date_sk
    column: str  # e.g. sold_date
    partition: str  # e.g. sold_month


@dataclass(frozen=True)
class TableSpec:
    """One TPC-DS table: its columns, primary key and, for a fact, its dating and item key."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    dating: Dating | None = None
    item_key: str | None = None

    @property
    def is_fact(self) -> bool:
        return self.name in FACT_NAMES

    @cached_property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def measures(self) -> tuple[str, ...]:
        """Contract §3 rule 2: every integer and decimal column of a fact except the ``*_net_profit``
        ones (keys, ticket and order numbers are identifiers, so never measures)."""
        if not self.is_fact:
            return ()
        return tuple(c.name for c in self.columns if c.numeric and not c.name.endswith("_net_profit"))

    @property
    def date_keys(self) -> tuple[str, ...]:
        """Contract §3 rule 3: a fact's ``*_date_sk`` columns, each checked against ``date_dim``."""
        if not self.is_fact:
            return ()
        return tuple(c.name for c in self.columns if c.name.endswith("_date_sk"))

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every silver rule a row of this table can break, in the order ``reason`` picks the first."""
        names = ["missing_primary_key"]
        if self.is_fact:
            names += [f"negative_value:{m}" for m in self.measures]
            names += ["unknown_date", "unknown_item"]
        return (*names, "duplicate")

    @property
    def bronze_rule_names(self) -> tuple[str, ...]:
        """Every bronze reason a line of this table can get, in order."""
        return ("wrong_field_count", *(f"invalid_type:{c.name}" for c in self.columns if c.type != "string"))


def _parse(ddl: str) -> dict[str, tuple[Column, ...]]:
    out: dict[str, tuple[Column, ...]] = {}
    for block in re.split(r"\n(?=\w+:\n)", ddl.strip()):
        head, _, body = block.partition(":\n")
        cols = re.findall(r"(\w+) (decimal\(\d+,\d+\)|\w+)", body)
        out[head.strip()] = tuple(Column(n, t) for n, t in cols)
    return out


_COLUMNS = _parse(_DDL)

#: The seven facts: primary key, dating, item key (contract §3).
_FACTS = {
    "store_sales": (("ss_item_sk", "ss_ticket_number"), Dating("ss_sold_date_sk", "sold_date", "sold_month"),
                    "ss_item_sk"),
    "store_returns": (("sr_item_sk", "sr_ticket_number"),
                      Dating("sr_returned_date_sk", "returned_date", "returned_month"), "sr_item_sk"),
    "catalog_sales": (("cs_item_sk", "cs_order_number"), Dating("cs_sold_date_sk", "sold_date", "sold_month"),
                      "cs_item_sk"),
    "catalog_returns": (("cr_item_sk", "cr_order_number"),
                        Dating("cr_returned_date_sk", "returned_date", "returned_month"), "cr_item_sk"),
    "web_sales": (("ws_item_sk", "ws_order_number"), Dating("ws_sold_date_sk", "sold_date", "sold_month"),
                  "ws_item_sk"),
    "web_returns": (("wr_item_sk", "wr_order_number"),
                    Dating("wr_returned_date_sk", "returned_date", "returned_month"), "wr_item_sk"),
    "inventory": (("inv_date_sk", "inv_item_sk", "inv_warehouse_sk"), Dating("inv_date_sk", "inv_date", "inv_month"),
                  "inv_item_sk"),
}
FACT_NAMES = tuple(_FACTS)


def _spec(name: str, columns: tuple[Column, ...]) -> TableSpec:
    if name in _FACTS:
        pk, dating, item = _FACTS[name]
        return TableSpec(name, columns, pk, dating, item)
    # A dimension's primary key is its surrogate key, its first column.
    return TableSpec(name, columns, (columns[0].name,))


#: Every table, by name, in alphabetical order.
TABLES: dict[str, TableSpec] = {n: _spec(n, cols) for n, cols in sorted(_COLUMNS.items())}
FACTS: dict[str, TableSpec] = {n: TABLES[n] for n in FACT_NAMES}
DIMENSIONS: dict[str, TableSpec] = {n: t for n, t in TABLES.items() if n not in _FACTS}
